// The console's admin pages in a browser (issue 23, round two): keys (#9), users (#10), usage (#11),
// sign-in messages (#14), provider health (#16), budgets & limits, the audit log — what an admin sees.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { ADMIN, DESKTOP, nextDialog, PLAIN, skipBrowser, until, useHarness } from './harness.js';

describe('the console’s admin pages in a browser', { skip: skipBrowser }, () => {
  const h = useHarness();
  let adminToken: string;
  let plainId: string;

  before(async () => {
    adminToken = await h.login(ADMIN);
    plainId = await h.userId(adminToken, PLAIN.email);
  });

  it('calls a deployment failing every request “failing” before its breaker opens; mid-stream failures count (#16)', async () => {
    // The harness's breaker opens after 50 failures: these three leave it closed.
    h.upstream.queue(
      { kind: 'error-event', afterChunks: 2 },
      { kind: 'error-event', afterChunks: 2 },
      { kind: 'error-event', afterChunks: 2 },
    );
    for (let i = 0; i < 3; i++) {
      const res = await h.chat(adminToken, { stream: true });
      assert.equal(res.status, 200); // the stream started, then failed mid-way
      assert.match(await res.text(), /error/);
    }
    const page = await h.newPage(DESKTOP, 'providers');
    await h.signIn(page, ADMIN, '#/providers');
    const row = page.getByRole('table', { name: /fake-route/ }).getByRole('row', { name: /gpt-4o-mini/ });
    await row.getByText('failing (100% errors)').waitFor();
    assert.equal(await row.getByTestId('circuit-state').getAttribute('data-state'), 'closed');
    assert.equal((await row.getByTestId('error-ratio').textContent())?.trim(), '100.0%');
    await h.shot(page, 'providers-failing-closed');
    // Healthy requests bring it down to "degraded" (and the badge says how many fail).
    for (let i = 0; i < 4; i++) assert.equal((await h.chat(adminToken)).status, 200);
    await row.getByText('degraded (43% errors)').waitFor();
    await page.context().close();
  });

  it('lists every key with its owner and expiry, creates one for another user, refuses a duplicate name, names the prefix when revoking (#9)', async () => {
    const own = await h.api('POST', '/api/keys', adminToken, { name: 'admin own key' });
    assert.equal(own.status, 201);
    const theirs = await h.api('POST', '/api/keys', adminToken, { name: 'their key', user_id: plainId });
    assert.equal(theirs.status, 201);
    const page = await h.newPage(DESKTOP, 'keys');
    await h.signIn(page, ADMIN, '#/keys');
    const row = (name: string) => page.getByTestId('key-row').filter({ hasText: name });
    await row('their key').waitFor();
    assert.match((await row('their key').locator('td[data-label="Owner"]').textContent()) ?? '', /plain@/);
    assert.match(
      (await row('admin own key').locator('td[data-label="Owner"]').textContent()) ?? '',
      /admin@/,
    );

    // A key for the plain user, expiring in 30 days.
    await page.getByLabel('Key name').fill('plain ci');
    await page.getByLabel('Owner').selectOption({ label: PLAIN.email });
    await page.getByLabel('Expires').selectOption({ label: 'in 30 days' });
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.getByText(`Copy this key for ${PLAIN.email}`).waitFor();
    await row('plain ci').waitFor();
    const expires = (await row('plain ci').locator('td[data-label="Expires"]').textContent()) ?? '';
    assert.doesNotMatch(expires, /never/);
    const plainKeys = await h.api('GET', `/api/keys?user_id=${plainId}`, adminToken);
    const created = plainKeys.body.data.find((k: { name: string }) => k.name === 'plain ci');
    assert.ok(created?.expires_at, 'stored with an expiry');
    const days = (Date.parse(created.expires_at) - Date.now()) / 86_400_000;
    assert.ok(days > 29 && days <= 30, `expires in ${days} days`);

    // The same name again for the same owner: refused, nothing created.
    await page.getByLabel('Key name').fill('plain ci');
    await page.getByLabel('Owner').selectOption({ label: PLAIN.email });
    await page.getByRole('button', { name: 'Create key' }).click();
    await page
      .getByRole('alert')
      .getByText(/already has an active key named “plain ci”/)
      .waitFor();
    assert.equal(
      (await h.api('GET', `/api/keys?user_id=${plainId}`, adminToken)).body.data.filter(
        (k: { name: string }) => k.name === 'plain ci',
      ).length,
      1,
    );

    // Revoking asks with the owner and the prefix; dismissing keeps the key.
    let asked = nextDialog(page, false);
    await row('plain ci').getByRole('button', { name: 'Revoke plain ci' }).click();
    const question = await asked;
    assert.ok(question.includes(`${created.prefix}…`), question);
    assert.ok(question.includes(PLAIN.email), question);
    assert.equal((await h.api('GET', `/api/keys/${created.id}`, adminToken)).body.revoked_at, null);
    asked = nextDialog(page, true);
    await row('plain ci').getByRole('button', { name: 'Revoke plain ci' }).click();
    await asked;
    await until(
      async () =>
        ((await row('plain ci').locator('td[data-label="Status"]').textContent()) ?? '') === 'revoked',
      'the key to show as revoked',
    );
    assert.equal(
      await page.getByRole('alert').count(),
      0,
      'the old error left once a later action succeeded',
    );
    await h.shot(page, 'keys-owners');
    await page.context().close();
  });

  it('asks before role changes and disabling, shows status as text, accepts only what the server does, and keeps one message (#10)', async () => {
    const page = await h.newPage(DESKTOP, 'users');
    await h.signIn(page, ADMIN, '#/users');
    const form = page.getByRole('form', { name: 'Create user' });
    // 9 characters: the browser refuses the form, no request is made.
    let posted = 0;
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/users')) posted++;
    });
    await form.getByLabel('Email').fill('short@example.com');
    await form.getByLabel('Password').fill('123456789');
    await form.getByRole('button', { name: 'Create user' }).click();
    assert.equal(
      await form
        .getByLabel('Password')
        .evaluate((el: { validity: { tooShort: boolean } }) => el.validity.tooShort),
      true,
    );
    assert.equal(posted, 0);
    // A server refusal (the email exists), then a success: only the success stays on screen.
    await form.getByLabel('Email').fill(PLAIN.email);
    await form.getByLabel('Password').fill('long-enough-password');
    await form.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('alert').waitFor();
    assert.doesNotMatch((await page.getByRole('alert').textContent()) ?? '', /\(\d{3}\)/);
    await form.getByLabel('Email').fill('new-user@example.com');
    await form.getByLabel('Password').fill('long-enough-password');
    await form.getByRole('button', { name: 'Create user' }).click();
    await page.getByRole('status').getByText('Created new-user@example.com.').waitFor();
    assert.equal(await page.getByRole('alert').count(), 0);

    const row = page.getByTestId('user-row').filter({ hasText: 'new-user@example.com' });
    assert.equal((await row.getByTestId('user-status').textContent())?.trim(), 'active');
    const stored = async () =>
      (await h.api('GET', '/api/users?limit=100', adminToken)).body.data.find(
        (u: { email: string }) => u.email === 'new-user@example.com',
      );
    // A role change asks first: dismissed, nothing changes (and the select shows the stored role).
    let asked = nextDialog(page, false);
    await row.getByLabel('Role of new-user@example.com').selectOption('admin');
    assert.match(await asked, /Make new-user@example.com an administrator\?/);
    await until(
      async () => (await row.getByLabel('Role of new-user@example.com').inputValue()) === 'user',
      'the select to show the stored role',
    );
    assert.equal((await stored()).role, 'user');
    asked = nextDialog(page, true);
    await row.getByLabel('Role of new-user@example.com').selectOption('admin');
    await asked;
    await page.getByRole('status').getByText('new-user@example.com is now an administrator.').waitFor();
    assert.equal((await stored()).role, 'admin');
    // Disabling asks too; the status column then says so.
    asked = nextDialog(page, false);
    await row.getByRole('button', { name: 'Disable new-user@example.com' }).click();
    assert.match(await asked, /Disable new-user@example.com\?/);
    assert.equal((await stored()).disabled, false);
    asked = nextDialog(page, true);
    await row.getByRole('button', { name: 'Disable new-user@example.com' }).click();
    await asked;
    await until(
      async () => (await row.getByTestId('user-status').textContent())?.trim() === 'disabled',
      'disabled',
    );
    assert.equal((await stored()).disabled, true);
    await h.shot(page, 'users-confirmed');
    await page.context().close();
  });

  it('tells people why they cannot sign in, in words: wrong password, disabled account, too many attempts (#14)', async () => {
    const disabled = { email: 'gone@example.com', password: 'gone-password-123' };
    const made = await h.api('POST', '/api/users', adminToken, disabled);
    assert.equal(made.status, 201);
    assert.equal(
      (await h.api('PATCH', `/api/users/${made.body.id}`, adminToken, { disabled: true })).status,
      200,
    );
    const page = await h.newPage(DESKTOP, 'signin');
    const attempt = async (email: string, password: string) => {
      await page.getByLabel('Email').fill(email);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      await until(async () => await page.getByRole('button', { name: 'Sign in' }).isEnabled(), 'the form');
      return ((await page.getByRole('alert').textContent()) ?? '').trim();
    };
    await page.goto(`${h.base}/console/`);
    assert.equal(await attempt(PLAIN.email, 'not-the-password'), 'Wrong email or password.');
    assert.equal(
      await attempt(disabled.email, disabled.password),
      'This account is disabled. Ask an administrator to enable it again.',
    );
    assert.equal(await attempt(disabled.email, 'not-the-password'), 'Wrong email or password.');
    // Five failures for one account from one address: the sixth is throttled for the window (15 min).
    const throttled = 'throttled@example.com';
    for (let i = 0; i < 5; i++)
      await h.api('POST', '/api/auth/login', '', { email: throttled, password: 'wrong-password' });
    assert.match(
      await attempt(throttled, 'wrong-password'),
      /^Too many failed sign-ins\. Try again in 1[45] minutes\.$/,
    );
    await h.shot(page, 'signin-throttled');
    await page.context().close();
  });

  it('usage: totals in full decimals, singular counts, one plain message for a reversed range, no stale charts (#11)', async () => {
    const plainToken = await h.login(PLAIN);
    assert.equal((await h.chat(plainToken)).status, 200);
    const page = await h.newPage(DESKTOP, 'usage');
    await h.signIn(page, PLAIN, '#/usage');
    const totals = page.getByTestId('usage-totals');
    await until(async () => /\b1 request\b/.test((await totals.textContent()) ?? ''), 'one request');
    assert.doesNotMatch((await totals.textContent()) ?? '', /1 requests/);
    const cost = ((await page.getByTestId('total-cost').textContent()) ?? '').trim();
    assert.match(cost, /^\$0\.0000\d*[1-9]$/, `a fraction of a cent in full: ${cost}`);
    const dayCost = await page
      .getByRole('row', { name: /^\d{4}-\d{2}-\d{2}/ })
      .first()
      .getByRole('cell')
      .nth(3)
      .textContent();
    assert.equal(cost, `$${dayCost?.trim()}`, 'the total and the one day agree');
    assert.ok((await page.locator('.chart canvas').count()) >= 4);
    // Date presets set the range.
    await page.getByRole('button', { name: 'Last 7 days' }).click();
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(await page.getByLabel('To', { exact: true }).inputValue(), today);
    assert.equal(
      await page.getByLabel('From', { exact: true }).inputValue(),
      new Date(Date.now() - 6 * 86_400_000).toISOString().slice(0, 10),
    );
    await page.getByRole('button', { name: 'This month' }).click();
    assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), `${today.slice(0, 8)}01`);
    await until(async () => /\b1 request\b/.test((await totals.textContent()) ?? ''), 'the request again');
    // From after To: one message in plain words, and the charts go.
    await page.getByLabel('From', { exact: true }).fill('2031-01-10');
    await page.getByLabel('To', { exact: true }).fill('2031-01-01');
    await page.getByRole('alert').getByText('“From” must be on or before “To”.').waitFor();
    assert.equal(await page.getByRole('alert').count(), 1);
    assert.equal(await page.locator('.chart canvas').count(), 0);
    await h.shot(page, 'usage-reversed-range');
    await page.context().close();
  });

  it('budgets & limits: sets and removes a user’s budget and a rate-limit override; keys and users link to it', async () => {
    const page = await h.newPage(DESKTOP, 'limits');
    await h.signIn(page, ADMIN, '#/users');
    await page.getByRole('link', { name: `Limits of ${PLAIN.email}` }).click();
    await page.getByRole('heading', { name: 'Budgets & limits' }).waitFor();
    const budgets = page.getByTestId('budgets');
    await budgets.getByText('No budget: spending is not capped.').waitFor();
    const budgetForm = page.getByRole('form', { name: 'Set a budget' });
    await budgetForm.getByLabel('Period').selectOption('month');
    await budgetForm.getByLabel('USD limit').fill('2.5');
    await budgetForm.getByLabel('Token limit').fill('100000');
    await budgetForm.getByRole('button', { name: 'Save budget' }).click();
    const monthly = budgets.getByRole('row', { name: /Monthly/ });
    await monthly.waitFor();
    assert.match((await monthly.textContent()) ?? '', /\$2\.5[\s\S]*100,000/);
    const stored = await h.api('GET', `/api/budgets/user/${plainId}`, adminToken);
    assert.deepEqual(
      stored.body.data.map((b: { period: string; limit_usd: number; limit_tokens: number }) => [
        b.period,
        b.limit_usd,
        b.limit_tokens,
      ]),
      [['month', 2.5, 100_000]],
    );
    const limitForm = page.getByRole('form', { name: 'Override a rate limit' });
    await limitForm.getByLabel('Limit').selectOption('requests_per_minute');
    await limitForm.getByLabel('Value').fill('7');
    await limitForm.getByRole('button', { name: 'Save limit' }).click();
    const override = page.getByTestId('overrides').getByRole('row', { name: /Requests per minute/ });
    await override.getByText('7', { exact: true }).waitFor();
    assert.deepEqual((await h.api('GET', `/api/limits/user/${plainId}`, adminToken)).body.data, [
      { limit: 'requests_per_minute', value: 7 },
    ]);
    await h.shot(page, 'limits');
    await override.getByRole('button', { name: /Reset/ }).click();
    await page.getByTestId('overrides').getByText('No overrides: the defaults apply.').waitFor();
    const asked = nextDialog(page, true);
    await monthly.getByRole('button', { name: /Remove/ }).click();
    await asked;
    await budgets.getByText('No budget: spending is not capped.').waitFor();
    assert.deepEqual((await h.api('GET', `/api/budgets/user/${plainId}`, adminToken)).body.data, []);
    // From the keys page: the key's own limits.
    await page.goto(`${h.base}/console/#/keys`);
    await page.getByRole('link', { name: 'Limits of their key' }).click();
    const keySelect = page.getByLabel('API key', { exact: true });
    await until(
      async () => /their key/.test((await keySelect.locator('option:checked').textContent()) ?? ''),
      'the key chosen',
    );
    await page.context().close();
  });

  it('audit log: newest first, filtered by action and by who acted', async () => {
    const page = await h.newPage(DESKTOP, 'audit');
    await h.signIn(page, ADMIN, '#/audit');
    const rows = page.getByTestId('audit-row');
    await rows.first().waitFor();
    assert.match(
      (await rows.first().textContent()) ?? '',
      /auth\.login/,
      'the sign-in just made comes first',
    );
    await page.getByLabel('Action').fill('POST /api/users');
    await page.getByRole('button', { name: 'Filter' }).click();
    await until(async () => {
      const texts = await rows.allTextContents();
      return texts.length > 0 && texts.every((t) => t.includes('POST /api/users'));
    }, 'only user creations');
    await page.getByLabel('Action').fill('');
    await page.getByLabel('By').selectOption({ label: ADMIN.email });
    await page.getByRole('button', { name: 'Filter' }).click();
    await until(async () => {
      const texts = await rows.locator('td[data-label="By"]').allTextContents();
      return texts.length > 0 && texts.every((t) => t === ADMIN.email);
    }, 'only the admin’s events');
    await h.shot(page, 'audit');
    await page.context().close();
  });

  it('invalidates the response cache from the Providers page: the next identical request is a miss', async () => {
    const cached = async () =>
      (
        await h.chat(adminToken, { temperature: 0, messages: [{ role: 'user', content: 'cache me' }] })
      ).headers.get('x-cache');
    await cached();
    assert.equal(await cached(), 'hit');
    const page = await h.newPage(DESKTOP, 'cache');
    await h.signIn(page, ADMIN, '#/providers');
    const form = page.getByRole('form', { name: 'Response cache' });
    await form.getByLabel('Pattern').fill('responses:*');
    const asked = nextDialog(page, true);
    await form.getByRole('button', { name: 'Invalidate' }).click();
    assert.match(await asked, /responses:\*/);
    await form
      .getByRole('status')
      .getByText(/^Removed [1-9]\d* cached entr(y|ies)\.$/)
      .waitFor();
    assert.equal(await cached(), 'miss');
    await page.context().close();
  });

  it('ran without console errors', () => {
    // 401s and 403s the sign-in page provoked on purpose are network errors Chromium logs: not ours.
    const ours = h.consoleErrors.filter((e) => !/status of (401|403|409|429)/.test(e));
    assert.deepEqual(ours, []);
  });
});
