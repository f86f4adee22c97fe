// Issue 23's admin leftovers in a browser, at 1280×800 and 390×844, with axe-core: every key with its
// budget, rate limits and allowed models; deleting a user and resetting a password; usage filtered by user,
// key and model with date presets — light and dark.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
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

const VIEWPORTS = [
  ['desktop', DESKTOP],
  ['phone', PHONE],
] as const;

/** What a user would notice on a narrow screen: sideways scrolling, controls out of reach. */
async function layoutProblems(page: Page): Promise<string[]> {
  const m = (await page.evaluate(`(() => {
    const doc = document.documentElement;
    const offscreen = [...document.querySelectorAll('main button, main a, main select, main input, dialog[open] button, dialog[open] input')]
      .filter((el) => el.getClientRects().length > 0)
      .filter((el) => { const r = el.getBoundingClientRect(); return r.right > window.innerWidth + 1 || r.left < -1; })
      .filter((el) => !el.closest('.scroll') || el.closest('table.cards'))
      .map((el) => (el.getAttribute('aria-label') || el.textContent || el.tagName).trim().slice(0, 40));
    return { overflow: doc.scrollWidth - doc.clientWidth, offscreen };
  })()`)) as { overflow: number; offscreen: string[] };
  return [
    ...(m.overflow > 0 ? [`${m.overflow}px wider than the screen`] : []),
    ...m.offscreen.map((o) => `off screen: ${o}`),
  ];
}

/** axe-core in the light and the dark scheme: no serious or critical violation. */
async function assertAccessible(page: Page, label: string) {
  for (const colorScheme of ['dark', 'light'] as const) {
    await page.emulateMedia({ colorScheme });
    const found = (await axeViolations(page)).map(
      (v) => `${v.id} (${v.impact}) ${v.help} — ${v.nodes.join(', ')}`,
    );
    assert.deepEqual(found, [], `${label}, ${colorScheme}: axe-core`);
  }
}

describe('the console’s admin pages, round two', { skip: skipBrowser }, () => {
  const h = useHarness();
  let adminToken: string;
  let plainId: string;

  before(async () => {
    adminToken = await h.login(ADMIN);
    plainId = await h.userId(adminToken, PLAIN.email);
  });

  it('API keys: each with owner, last use, expiry, budget, rate limits and allowed models; models can be restricted', async () => {
    const created = await h.api('POST', '/api/keys', adminToken, {
      name: 'metered',
      user_id: plainId,
      expires_in_days: 30,
    });
    assert.equal(created.status, 201);
    const key = created.body as { id: string; key: string; prefix: string };
    assert.equal((await h.chat(key.key)).status, 200);
    await h.api('PUT', `/api/budgets/key/${key.id}`, adminToken, { period: 'month', limit_usd: 5 });
    await h.api('PUT', `/api/limits/key/${key.id}`, adminToken, { limit: 'requests_per_minute', value: 30 });

    for (const [name, viewport] of VIEWPORTS) {
      const page = await h.newPage(viewport, `keys-${name}`);
      await h.signIn(page, ADMIN, '#/keys');
      const row = page.getByTestId('key-row').filter({ hasText: 'metered' });
      await row.waitFor();
      const cell = async (label: string) =>
        ((await row.locator(`td[data-label="${label}"]`).textContent()) ?? '').trim();
      assert.match(await cell('Owner'), /plain@example\.com/);
      assert.doesNotMatch(await cell('Last used'), /never/);
      assert.doesNotMatch(await cell('Expires'), /never/);
      assert.equal(await cell('Budget'), '$5/month');
      assert.equal(await cell('Rate limits'), '30 requests/min');
      // The phone round starts where the desktop one left the key: restricted to fake-route.
      assert.equal(await cell('Models'), name === 'desktop' ? 'every model' : 'fake-route');
      assert.deepEqual(await layoutProblems(page), [], `${name}: keys page`);
      await assertAccessible(page, `keys (${name})`);

      // Restrict the key to one model in the dialog; the key is refused any other at once.
      await row.getByRole('button', { name: 'Models of metered' }).click();
      const dialog = page.getByRole('dialog', { name: `Models of metered (${key.prefix}…)` });
      await dialog.waitFor();
      assert.deepEqual(await layoutProblems(page), [], `${name}: models dialog`);
      await assertAccessible(page, `models dialog (${name})`);
      await h.shot(page, `round-two-keys-models-${name}`);
      const fakeRoute = dialog.getByRole('checkbox', { name: 'fake-route' });
      if (name === 'desktop') await fakeRoute.check();
      else await fakeRoute.uncheck();
      await dialog.getByRole('button', { name: 'Save models' }).click();
      const expected = name === 'desktop' ? 'fake-route' : 'every model';
      await until(async () => (await cell('Models')) === expected, `Models: ${expected}`);
      assert.equal(await dialog.count(), 0, 'the dialog closed');
      const stored = await h.api('GET', `/api/keys/${key.id}`, adminToken);
      assert.deepEqual(stored.body.allowed_models, name === 'desktop' ? ['fake-route'] : null);
      const other = await h.chat(key.key, { model: 'demo' });
      if (name === 'desktop') {
        assert.equal(other.status, 403);
        assert.equal(((await other.json()) as { error: { code: string } }).error.code, 'model_not_allowed');
        assert.equal((await h.chat(key.key)).status, 200, 'the allowed model still answers');
      } else assert.equal(other.status, 200, 'every model again');
      await h.shot(page, `round-two-keys-${name}`, true);
      await page.context().close();
    }
  });

  it('users: delete with a confirmation naming the user, reset a password in a dialog (no mail configured)', async () => {
    for (const [name, viewport] of VIEWPORTS) {
      const doomed = { email: `doomed-${name}@example.com`, password: 'doomed-password-123' };
      const resettable = { email: `reset-${name}@example.com`, password: 'first-password-123' };
      for (const who of [doomed, resettable])
        assert.equal((await h.api('POST', '/api/users', adminToken, who)).status, 201);
      const doomedToken = await h.login(doomed);
      const doomedKey = (await h.api('POST', '/api/keys', doomedToken, { name: 'doomed key' })).body.key;
      assert.equal((await h.chat(doomedKey)).status, 200);

      const page = await h.newPage(viewport, `users-${name}`);
      await h.signIn(page, ADMIN, '#/users');
      const row = (email: string) => page.getByTestId('user-row').filter({ hasText: email });
      await row(doomed.email).waitFor();
      assert.equal(
        await row(ADMIN.email)
          .getByRole('button', { name: `Delete ${ADMIN.email}` })
          .isDisabled(),
        true,
        'no deleting yourself',
      );
      assert.deepEqual(await layoutProblems(page), [], `${name}: users page`);
      await assertAccessible(page, `users (${name})`);

      // Dismissed: nothing happens. Accepted: the account goes, its key stops at once.
      let asked = nextDialog(page, false);
      await row(doomed.email)
        .getByRole('button', { name: `Delete ${doomed.email}` })
        .click();
      assert.match(await asked, new RegExp(`^Delete ${doomed.email}\\?`));
      assert.equal((await h.chat(doomedKey)).status, 200);
      asked = nextDialog(page, true);
      await row(doomed.email)
        .getByRole('button', { name: `Delete ${doomed.email}` })
        .click();
      await asked;
      await page.getByRole('status').getByText(`Deleted ${doomed.email}`).waitFor();
      await until(async () => (await row(doomed.email).count()) === 0, 'the row to go');
      assert.equal((await h.chat(doomedKey)).status, 401);

      // The reset dialog: the browser refuses a short password; a good one signs the user in.
      await row(resettable.email)
        .getByRole('button', { name: `Reset password of ${resettable.email}` })
        .click();
      const dialog = page.getByRole('dialog', { name: `Set a new password for ${resettable.email}` });
      await dialog.waitFor();
      assert.deepEqual(await layoutProblems(page), [], `${name}: reset dialog`);
      await assertAccessible(page, `reset dialog (${name})`);
      await h.shot(page, `round-two-users-reset-${name}`);
      const field = dialog.getByLabel('New password');
      await field.fill('short');
      await dialog.getByRole('button', { name: 'Set password' }).click();
      assert.equal(
        await field.evaluate((el: { validity: { tooShort: boolean } }) => el.validity.tooShort),
        true,
      );
      await field.fill('second-password-123');
      await dialog.getByRole('button', { name: 'Set password' }).click();
      await page.getByRole('status').getByText(`${resettable.email} has a new password`).waitFor();
      assert.equal(await dialog.count(), 0);
      const login = await h.api('POST', '/api/auth/login', '', {
        ...resettable,
        password: 'second-password-123',
      });
      assert.equal(login.status, 200);
      await h.shot(page, `round-two-users-${name}`, true);
      await page.context().close();
    }
  });

  it('usage: filters by user, key and model ask the server, date presets set the range', async () => {
    const plainToken = await h.login(PLAIN);
    const plainKey = (await h.api('POST', '/api/keys', plainToken, { name: 'plain usage key' })).body;
    assert.equal((await h.chat(plainKey.key)).status, 200);
    assert.equal((await h.chat(adminToken)).status, 200);
    const total = async (query: string) => {
      const res = await h.api('GET', `/api/usage?group_by=day${query}`, adminToken);
      return (res.body.data as { requests: number }[]).reduce((n, r) => n + r.requests, 0);
    };
    const everyone = await total('');
    const plainOnly = await total(`&user_id=${plainId}`);
    const keyOnly = await total(`&api_key_id=${plainKey.id}`);
    assert.ok(
      everyone > plainOnly && plainOnly >= keyOnly && keyOnly === 1,
      `${everyone} ${plainOnly} ${keyOnly}`,
    );
    const requests = (n: number) => `${n} request${n === 1 ? '' : 's'}`;

    for (const [name, viewport] of VIEWPORTS) {
      const page = await h.newPage(viewport, `usage-${name}`);
      const asked: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/api/usage?')) asked.push(r.url());
      });
      await h.signIn(page, ADMIN, '#/usage');
      const totals = page.getByTestId('usage-totals');
      const shows = (n: number) =>
        until(async () => ((await totals.textContent()) ?? '').startsWith(`${requests(n)} ·`), requests(n));
      await shows(everyone);
      await page.getByLabel('Filter by user').selectOption({ label: PLAIN.email });
      await shows(plainOnly);
      assert.ok(asked.some((u) => u.includes(`user_id=${plainId}`) && u.includes('group_by=day')));
      await page
        .getByLabel('Filter by API key')
        .selectOption({ label: `plain usage key (${plainKey.prefix}…)` });
      await shows(keyOnly);
      assert.ok(asked.some((u) => u.includes(`api_key_id=${plainKey.id}`) && u.includes('group_by=model')));
      await page.getByLabel('Filter by model').selectOption('fake-route');
      await shows(keyOnly);
      assert.ok(asked.some((u) => u.includes('model=fake-route')));
      await page.getByLabel('Filter by user').selectOption({ label: 'everyone' });
      assert.equal(await page.getByLabel('Filter by API key').inputValue(), '', 'a new user clears the key');
      await page.getByLabel('Filter by model').selectOption({ label: 'any model' });
      await shows(everyone);

      const today = new Date().toISOString().slice(0, 10);
      const from = page.getByLabel('From', { exact: true });
      const to = page.getByLabel('To', { exact: true });
      for (const [preset, start] of [
        ['Today', today],
        ['Last 7 days', new Date(Date.now() - 6 * 86_400_000).toISOString().slice(0, 10)],
        ['Last 30 days', new Date(Date.now() - 29 * 86_400_000).toISOString().slice(0, 10)],
        ['This month', `${today.slice(0, 8)}01`],
      ] as const) {
        await page.getByRole('button', { name: preset }).click();
        assert.equal(await from.inputValue(), start, preset);
        assert.equal(await to.inputValue(), today, preset);
      }
      await until(async () => (await page.getByText(/^Loading/).count()) === 0, 'usage to load');
      assert.deepEqual(await layoutProblems(page), [], `${name}: usage page`);
      await assertAccessible(page, `usage (${name})`);
      await h.shot(page, `round-two-usage-${name}`, true);
      await page.context().close();
    }
    assert.deepEqual(h.consoleErrors, []);
  });
});
