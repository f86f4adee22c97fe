// The Guardrails page (issue 22's console page) in a browser: an admin adds a guardrail and it holds on
// /v1 at once, the server's 400s show as sentences by the form, edit switches it off, presets attach to an
// API key, the "In effect" view lists what a request of that key gets, and crisis referrals are counted.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN, DESKTOP, PLAIN, skipBrowser, until, useHarness } from './harness.js';

describe('console: the Guardrails page', { skip: skipBrowser }, () => {
  // The referral count names the server's zone (TIMEZONE), not the browser's.
  const h = useHarness({ TIMEZONE: 'Asia/Shanghai' });
  let adminToken: string;
  let keyId: string;

  before(async () => {
    adminToken = await h.login(ADMIN);
    const key = await h.api('POST', '/api/keys', adminToken, { name: 'tutoring app' });
    assert.equal(key.status, 201);
    keyId = key.body.id;
  });

  const chat = async (content: string) => {
    const res = await h.chat(adminToken, { messages: [{ role: 'user', content }] });
    return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
  };
  const confirmNext = (page: Page) => page.once('dialog', (d) => void d.accept());
  const alertText = async (page: Page) => (await page.getByRole('alert').textContent()) ?? '';

  it('adds a guardrail that blocks /v1 at once; the server’s 400s read as sentences; edit switches it off; delete removes it', async () => {
    const page = await h.newPage(DESKTOP, 'guardrails');
    await h.signIn(page, ADMIN, '#/guardrails');
    await page.getByText('No stored guardrails: only the routing file’s apply.').waitFor();
    const form = page.getByRole('form', { name: 'Add guardrail' });
    await form.getByLabel('Name').fill('house-rules');
    await form.getByLabel('Check').selectOption('regex');
    await form.getByLabel('Deny patterns (one per line)').fill('(?i)forbidden phrase');
    await form.getByLabel('Action').selectOption('block');

    // No stage: a regex check needs one; the server says so and the form keeps what was typed.
    await form.getByRole('button', { name: 'Add guardrail' }).click();
    assert.match(await alertText(page), /stage: required for a regex check/);
    assert.equal(await form.getByLabel('Name').inputValue(), 'house-rules');
    // A pattern that does not compile.
    await form.getByLabel('Stage').selectOption('input');
    await form.getByLabel('Deny patterns (one per line)').fill('(unclosed');
    await form.getByRole('button', { name: 'Add guardrail' }).click();
    await until(async () => /deny/i.test(await alertText(page)), 'the bad pattern refused');
    // Attached to an API key without choosing one.
    await form.getByLabel('Deny patterns (one per line)').fill('(?i)forbidden phrase');
    await form.getByLabel('Applies to', { exact: true }).selectOption('key');
    await form.getByRole('button', { name: 'Add guardrail' }).click();
    await until(
      async () => /key guardrail needs a subject_id/.test(await alertText(page)),
      'the subject asked',
    );
    // "More settings" that is not JSON never reaches the server.
    await form.getByLabel('Applies to', { exact: true }).selectOption('global');
    await form.getByLabel(/^More settings/).fill('{threshold: 2');
    await form.getByRole('button', { name: 'Add guardrail' }).click();
    await until(
      async () => /More settings is not valid JSON/.test(await alertText(page)),
      'the JSON refused',
    );
    await form.getByLabel(/^More settings/).fill('');
    assert.equal((await chat('say the forbidden phrase')).status, 200, 'nothing stored yet');

    await form.getByRole('button', { name: 'Add guardrail' }).click();
    await page.getByRole('status').getByText('Saved house-rules for every request.').waitFor();
    const row = page.getByTestId('guardrail-row').filter({ hasText: 'house-rules' });
    assert.match((await row.textContent()) ?? '', /regex.*input.*block.*every request.*on/);
    await h.shot(page, 'guardrails-added');
    // It holds at once, for every client.
    const blocked = await chat('Please say the FORBIDDEN phrase');
    assert.equal(blocked.status, 400);
    assert.equal(blocked.body.error?.code, 'guardrail_blocked');
    assert.match(blocked.body.error?.message ?? '', /house-rules/);

    // Edit: the form fills with the stored guardrail; unchecking Enabled switches it off.
    await row.getByRole('button', { name: 'Edit house-rules' }).click();
    const edit = page.getByRole('form', { name: 'Edit guardrail' });
    assert.equal(await edit.getByLabel('Deny patterns (one per line)').inputValue(), '(?i)forbidden phrase');
    assert.equal(await edit.getByLabel('Stage').inputValue(), 'input');
    await edit.getByLabel('Enabled').uncheck();
    await edit.getByRole('button', { name: 'Save guardrail' }).click();
    await row.getByText('switched off').waitFor();
    assert.equal((await chat('say the forbidden phrase')).status, 200);

    // A second guardrail of the same name at the same place: the server's 409, in words.
    await form.getByLabel('Name').fill('house-rules');
    await form.getByLabel('Stage').selectOption('input');
    await form.getByLabel('Action').selectOption('block');
    await form.getByLabel('Keywords (one per line)').fill('forbidden');
    await form.getByRole('button', { name: 'Add guardrail' }).click();
    await until(async () => /already attached there/.test(await alertText(page)), 'the duplicate refused');

    confirmNext(page);
    await row.getByRole('button', { name: 'Delete house-rules' }).click();
    await page.getByRole('status').getByText('Deleted house-rules.').waitFor();
    await until(async () => (await row.count()) === 0, 'the row to go');
    const stored = await h.api('GET', '/api/guardrails', adminToken);
    assert.deepEqual(stored.body.data, []);
    await page.context().close();
  });

  it('applies a preset to an API key; "In effect" shows it for that key only; referrals are counted', async () => {
    const page = await h.newPage(DESKTOP, 'guardrail-presets');
    await h.signIn(page, ADMIN, '#/guardrails');
    const presets = page.getByRole('region', { name: 'Presets' });
    await presets.getByText(/Minor mode for tutoring apps/).waitFor();
    await presets.getByLabel('Applies to', { exact: true }).selectOption('key');
    await presets.getByLabel('API key', { exact: true }).selectOption(keyId);
    await presets.getByRole('button', { name: 'Apply child-safe' }).click();
    await page
      .getByRole('status')
      .getByText(/Applied child-safe: crisis, pii, minor-sexual-input/)
      .waitFor();
    const keyRows = page.getByTestId('guardrail-row').filter({ hasText: 'key tutoring app' });
    await until(async () => (await keyRows.count()) === 7, 'seven rows attached to the key');

    const effective = page.getByRole('region', { name: 'In effect' });
    await effective.getByRole('button', { name: 'Show' }).click();
    const list = effective.getByTestId('effective');
    await list.getByText('No guardrail applies.').waitFor();
    await effective.getByLabel('API key', { exact: true }).selectOption(keyId);
    await effective.getByRole('button', { name: 'Show' }).click();
    await list.getByText('minor-sexual-output').waitFor();
    const text = (await list.textContent()) ?? '';
    assert.match(
      text,
      /crisis.*pii.*minor-sexual-input.*minor-sexual-output.*injection.*ai-disclosure.*break-reminder/s,
    );
    assert.match(text, /\(stored\)/);
    await h.shot(page, 'guardrails-effective');

    // Crisis referrals: none yet; the wellbeing preset globally, one crisis statement, then one.
    assert.equal(
      await page.getByTestId('referrals-total').textContent(),
      '0 referrals in the last 30 days (Asia/Shanghai).',
    );
    await page
      .getByRole('region', { name: 'Presets' })
      .getByLabel('Applies to', { exact: true })
      .selectOption('global');
    await presets.getByRole('button', { name: 'Apply wellbeing' }).click();
    await page
      .getByRole('status')
      .getByText(/Applied wellbeing/)
      .waitFor();
    const referred = await chat('I want to kill myself');
    assert.equal(referred.status, 200);
    // Usage rows are written just after the answer (batched), so the page is reloaded until the row is there.
    await until(async () => {
      await page.reload();
      const total = page.getByTestId('referrals-total');
      await total.waitFor();
      return (await total.textContent()) === '1 referral in the last 30 days (Asia/Shanghai).';
    }, 'the referral counted');
    assert.match(
      (await page.getByRole('region', { name: 'Crisis referrals' }).textContent()) ?? '',
      /1 × suicide/,
    );
    await page.context().close();
  });

  it('marks a conversation a crisis referral flagged in the chat list, for admins only', async () => {
    const g = await h.api('POST', '/api/guardrails', adminToken, {
      name: 'crisis-badge',
      check: 'crisis',
      scope: 'global',
    });
    assert.equal(g.status, 201);
    const conversation = async (token: string, title: string, content: string) => {
      const c = await h.api('POST', '/api/conversations', token, { title, model: 'fake-route' });
      const m = await h.api('POST', `/api/conversations/${c.body.id}/messages`, token, { content });
      assert.equal(m.status, 200, JSON.stringify(m.body));
    };
    await conversation(adminToken, 'Hard day', 'I want to kill myself');
    await conversation(adminToken, 'Homework', 'what is 2 + 2?');
    const plainToken = await h.login(PLAIN);
    await conversation(plainToken, 'My hard day', 'I want to kill myself');

    const page = await h.newPage(DESKTOP, 'flagged-conversation');
    await h.signIn(page, ADMIN, '#/chat');
    const list = page.getByRole('complementary', { name: 'Conversations' });
    const flagged = list.getByRole('listitem').filter({ hasText: 'Hard day' });
    await flagged.getByText('flagged', { exact: true }).waitFor();
    assert.equal(
      await list.getByRole('listitem').filter({ hasText: 'Homework' }).getByText('flagged').count(),
      0,
    );
    await h.shot(page, 'chat-flagged-conversation');
    await page.context().close();

    // The user whose conversation it is sees no label.
    const plain = await h.newPage(DESKTOP, 'flagged-conversation-user');
    await h.signIn(plain, PLAIN, '#/chat');
    const own = plain.getByRole('complementary', { name: 'Conversations' });
    await own.getByText('My hard day').waitFor();
    assert.equal(await own.getByText('flagged', { exact: true }).count(), 0);
    await plain.context().close();
  });

  it('shows guardrail verdicts by guardrail and action on the usage page, to admins only', async () => {
    // Earlier tests referred users in crisis (the wellbeing preset's `crisis`): those verdicts are counted.
    const page = await h.newPage(DESKTOP, 'usage-verdicts');
    await h.signIn(page, ADMIN, '#/usage');
    const section = page.getByRole('region', { name: 'Guardrail verdicts' });
    await section
      .getByTestId('verdicts-total')
      .getByText(/^\d+ verdicts? from /)
      .waitFor();
    const row = section
      .getByRole('row')
      .filter({ has: page.getByRole('rowheader', { name: 'crisis', exact: true }) });
    await row.filter({ hasText: 'refer' }).first().waitFor();
    const cells = await row.filter({ hasText: 'refer' }).first().getByRole('cell').allTextContents();
    assert.deepEqual(cells.slice(0, 2), ['input', 'refer']);
    assert.ok(Number(cells[2]) >= 1, cells.join(' '));
    await h.shot(page, 'usage-guardrail-verdicts');
    await page.context().close();

    const plain = await h.newPage(DESKTOP, 'usage-verdicts-user');
    await h.signIn(plain, PLAIN, '#/usage');
    await plain.getByRole('heading', { name: 'Breakdown' }).waitFor();
    assert.equal(await plain.getByRole('region', { name: 'Guardrail verdicts' }).count(), 0);
    await plain.context().close();
  });
});
