// A plain user's own API keys and private assistants in the console (issue 23: "plain users manage their
// own assistants and API keys"): what the API lets them do, and nothing the server would refuse them.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  ADMIN,
  axeViolations,
  DESKTOP,
  nextDialog,
  PHONE,
  PLAIN,
  skipBrowser,
  until,
  useHarness,
} from './harness.js';

describe('a plain user’s keys and assistants in the console', { skip: skipBrowser }, () => {
  const h = useHarness();

  before(async () => {
    const adminToken = await h.login(ADMIN);
    const shared = await h.api('POST', '/api/assistants', adminToken, {
      name: 'Team rules',
      model: 'fake-route',
      system_prompt: 'Follow the team rules.',
      shared: true,
    });
    assert.equal(shared.status, 201, JSON.stringify(shared.body));
    // Another user's key, which the plain user must never see.
    assert.equal((await h.api('POST', '/api/keys', adminToken, { name: 'admin secret key' })).status, 201);
  });

  const models = (key: string) =>
    fetch(`${h.base}/v1/models`, { headers: { authorization: `Bearer ${key}` } });

  for (const [width, viewport] of [
    ['390', PHONE],
    ['1280', DESKTOP],
  ] as const) {
    it(`at ${width} px: creates a key (secret shown once), uses it against /v1/models, revokes it`, async () => {
      const page = await h.newPage(viewport, `plain-keys-${width}`);
      await h.signIn(page, PLAIN, '#/keys');
      await page.getByRole('heading', { name: 'API keys', level: 1 }).waitFor();
      assert.equal(await page.getByText('Administrators only').count(), 0);
      // Admin-only: choosing another owner, the owner column, a key's limits and models.
      assert.equal(await page.getByLabel('Owner').count(), 0);
      assert.equal(await page.getByRole('columnheader', { name: 'Owner' }).count(), 0);
      await until(async () => (await page.getByText('Loading keys…').count()) === 0, 'keys to load');
      assert.equal(await page.getByText('admin secret key').count(), 0, 'no other user’s key');

      const name = `laptop ${width}`;
      await page.getByLabel('Key name').fill(name);
      await page.getByRole('button', { name: 'Create key' }).click();
      const secret = ((await page.getByTestId('new-key').textContent()) ?? '').trim();
      assert.ok(secret.length > 20, `a secret: ${secret}`);
      const notice = page.getByRole('status').filter({ has: page.getByTestId('new-key') });
      assert.match((await notice.textContent()) ?? '', /Copy this key now — it is shown only once/);
      const row = page.getByTestId('key-row').filter({ hasText: name });
      await row.waitFor();
      assert.equal((await row.locator('td[data-label="Status"]').textContent())?.trim(), 'active');
      assert.equal(await row.getByRole('link', { name: /Limits/ }).count(), 0);
      assert.equal(await row.getByRole('button', { name: /Models/ }).count(), 0);
      await h.shot(page, `plain-keys-created-${width}`);

      // The key works for the API.
      const listed = await models(secret);
      assert.equal(listed.status, 200);
      assert.ok(
        ((await listed.json()) as { data: { id: string }[] }).data.some((m) => m.id === 'fake-route'),
      );

      // Shown once: a reload does not show the secret again.
      await page.reload();
      await row.waitFor();
      assert.equal(await page.getByTestId('new-key').count(), 0);
      assert.equal((await page.content()).includes(secret), false);

      // Revoke: the confirmation names the key and its prefix; the key stops working.
      const prefix = ((await row.locator('td[data-label="Prefix"]').textContent()) ?? '').replace('…', '');
      const question = nextDialog(page, true);
      await row.getByRole('button', { name: `Revoke ${name}` }).click();
      const text = await question;
      assert.match(text, new RegExp(`your key “${name}” \\(${prefix}…\\)`));
      await until(
        async () => (await row.locator('td[data-label="Status"]').textContent())?.trim() === 'revoked',
        'the key to show revoked',
      );
      assert.equal((await models(secret)).status, 401);
      assert.equal(await page.getByRole('alert').count(), 0);
      await page.context().close();
    });

    it(`at ${width} px: creates a private assistant, chats with it, edits and deletes it; the shared one is read-only`, async () => {
      const page = await h.newPage(viewport, `plain-assistants-${width}`);
      await h.signIn(page, PLAIN, '#/assistants');
      await page.getByRole('heading', { name: 'Assistants', level: 1 }).waitFor();
      // The admins' shared assistant: listed, no Edit or Delete; no "shared" option for a plain user.
      const team = page.getByRole('row', { name: /Team rules/ });
      await team.getByText('Every user').waitFor();
      assert.equal(await team.getByRole('button').count(), 0);
      await team.getByText('Managed by administrators').waitFor();
      assert.equal(await page.getByLabel('Shared with every user').count(), 0);

      const name = `French tutor ${width}`;
      const prompt = `Always answer in French (${width}).`;
      await page.getByLabel('Name').fill(name);
      await page.getByRole('combobox', { name: /^Model/ }).selectOption('fake-route');
      await page.getByLabel('System prompt').fill(prompt);
      await page.getByRole('button', { name: 'Create assistant' }).click();
      const mine = page.getByRole('row', { name: new RegExp(name) });
      await mine.getByText('Only its owner').waitFor();
      await h.shot(page, `plain-assistants-${width}`);

      // Used in a chat: the upstream gets its system prompt.
      const before = h.upstream.requests.length;
      await page.goto(`${h.base}/console/#/chat`);
      const picker = page.getByLabel('Model or assistant');
      await picker.getByRole('option', { name }).waitFor({ state: 'attached' });
      await picker.selectOption({ label: name });
      const composer = page.getByLabel('Message', { exact: true });
      await composer.fill('Hello tutor');
      await composer.press('Enter');
      await page.getByTestId('streaming').waitFor({ state: 'detached', timeout: 30_000 });
      await page.getByTestId('msg-assistant').first().waitFor();
      assert.equal(await page.getByRole('alert').count(), 0);
      const sent = h.upstream.requests.slice(before).map((r) => JSON.stringify(r.body));
      assert.ok(
        sent.some((b) => b.includes(prompt)),
        'the assistant’s system prompt reached the model',
      );

      // Edit, then delete.
      await page.goto(`${h.base}/console/#/assistants`);
      await page.getByRole('button', { name: `Edit ${name}` }).click();
      const renamed = `${name} v2`;
      await page.getByLabel('Name').fill(renamed);
      await page.getByRole('button', { name: 'Save assistant' }).click();
      const edited = page.getByRole('row', { name: new RegExp(renamed) });
      await edited.waitFor();
      const question = nextDialog(page, true);
      await edited.getByRole('button', { name: `Delete ${renamed}` }).click();
      assert.match(await question, new RegExp(renamed));
      await edited.waitFor({ state: 'detached' });
      assert.equal(await page.getByRole('alert').count(), 0);
      // The shared one is still there, untouched.
      await team.waitFor();
      await page.context().close();
    });
  }

  it('axe-core finds no serious or critical violation on both pages at 390 and 1280 px, light and dark; no console errors', async () => {
    const token = await h.login(PLAIN);
    // Something in each table: a key and a private assistant of the plain user.
    assert.equal((await h.api('POST', '/api/keys', token, { name: 'axe key' })).status, 201);
    const a = await h.api('POST', '/api/assistants', token, { name: 'Axe helper', model: 'fake-route' });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    const found: string[] = [];
    for (const [width, viewport] of [
      ['390', PHONE],
      ['1280', DESKTOP],
    ] as const) {
      const page = await h.newPage(viewport, `plain-axe-${width}`);
      await h.signIn(page, PLAIN);
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme: scheme });
        for (const [hash, text] of [
          ['keys', 'axe key'],
          ['assistants', 'Axe helper'],
        ] as const) {
          await page.goto(`${h.base}/console/#/${hash}`);
          await page.getByRole('row', { name: new RegExp(text) }).waitFor();
          for (const v of await axeViolations(page))
            found.push(
              `${width} ${scheme} #/${hash}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.join(', ')}`,
            );
          await h.shot(page, `plain-${hash}-${width}-${scheme}`);
        }
      }
      await page.context().close();
    }
    assert.deepEqual(found, []);
    assert.deepEqual(h.consoleErrors, []);
  });
});
