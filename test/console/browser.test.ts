// End to end: the built console in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against a real `colloquy serve` on SQLite with the demo model. Screenshots go to
// test-artifacts/console/. Skipped (with a note) only when Chromium is missing outside CI.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN, ARTIFACTS, PLAIN, ROOT, skipBrowser, until, useHarness } from './harness.js';

const LONG =
  'Please explain, in as much detail as you can manage, how streaming replies work in this chat ' +
  'service and why a client would want to see every token as soon as it is produced by the model.';

describe('console in a browser', { skip: skipBrowser }, () => {
  // The demo model's words come slowly enough to watch the reply grow; two failures open fake-route's
  // circuit for ten minutes (the provider-health test).
  const h = useHarness({ DEMO_WORD_DELAY_MS: '20' }, { breaker: { failures: 2, cooldown_ms: 600_000 } });
  const cspErrors: string[] = [];

  const newPage = async (): Promise<Page> => {
    const page = await h.newPage({ width: 1280, height: 860 }, 'browser');
    // This file's waits were written for Playwright's default of 30 s (the harness's pages wait 15 s).
    page.setDefaultTimeout(30_000);
    page.on('console', (m) => {
      if (/Content[- ]Security[- ]Policy/i.test(m.text())) cspErrors.push(m.text());
    });
    return page;
  };

  const streaming = (page: Page) => page.getByTestId('streaming');
  const idle = (page: Page) => streaming(page).waitFor({ state: 'detached', timeout: 30_000 });

  it('an admin chats (streaming, stop, regenerate, edit and branches), manages keys and sees usage', async () => {
    const page = await newPage();
    await page.goto(`${h.base}/console/`);
    await page.getByRole('heading', { name: 'Sign in to Colloquy' }).waitFor();
    await h.shot(page, 'sign-in');
    await h.signIn(page, ADMIN);
    await page.getByLabel('Model or assistant').selectOption('model:demo');

    // Streaming: the reply grows word by word.
    await page.getByLabel('Message', { exact: true }).fill(LONG);
    await page.getByLabel('Message', { exact: true }).press('Enter');
    const streamed = async () => (await streaming(page).textContent({ timeout: 1_000 })) ?? '';
    await until(async () => (await streamed()).includes('demo'), 'the first words of the reply');
    const early = (await streaming(page).textContent()) ?? '';
    await page.waitForTimeout(300);
    const later =
      (await streaming(page)
        .textContent()
        .catch(() => null)) ?? '';
    assert.ok(
      later.length > early.length,
      `the reply should grow: ${JSON.stringify(early)} → ${JSON.stringify(later)}`,
    );
    await idle(page);
    const replies = page.getByTestId('msg-assistant');
    await replies.first().waitFor();
    assert.match((await replies.first().textContent()) ?? '', /\[demo\] You said/);

    // Stop: the reply ends early and is kept as partial.
    await page.getByLabel('Message', { exact: true }).fill(`${LONG} Once more, please.`);
    await page.getByRole('button', { name: 'Send' }).click();
    await until(async () => (await streamed()).length > 20, 'the reply to start');
    await page.getByRole('button', { name: 'Stop' }).click();
    await idle(page);
    await replies.nth(1).waitFor();
    assert.match((await replies.nth(1).textContent()) ?? '', /partial/);

    // Regenerate: a second reply to the same message, with a branch switcher.
    await replies.nth(1).getByRole('button', { name: 'Regenerate' }).click();
    await idle(page);
    await page.getByTestId('msg-assistant').nth(1).getByText('2 / 2').waitFor();
    await h.shot(page, 'chat');

    // Edit the first message: a new branch; switch back to the original and forth again.
    const users = page.getByTestId('msg-user');
    await users.first().getByRole('button', { name: 'Edit' }).click();
    await page.getByLabel('Edit message').fill('An edited question about branches.');
    await page.getByRole('button', { name: 'Save and send' }).click();
    await idle(page);
    await users.first().getByText('2 / 2').waitFor();
    assert.match((await users.first().textContent()) ?? '', /An edited question/);
    assert.equal(await users.count(), 1);
    await users.first().getByRole('button', { name: 'Previous branch' }).click();
    await users.first().getByText('1 / 2').waitFor();
    assert.match((await users.first().textContent()) ?? '', /Please explain/);
    await until(async () => (await users.count()) === 2, 'the original branch (two user messages)');
    await users.first().getByRole('button', { name: 'Next branch' }).click();
    await users.first().getByText('2 / 2').waitFor();
    await h.shot(page, 'chat-branches');

    // The conversation list: rename, search, delete.
    const sidebar = page.getByRole('complementary', { name: 'Conversations' });
    await sidebar
      .getByRole('button', { name: /^Rename / })
      .first()
      .click();
    await page.getByLabel('New title').fill('Streaming questions');
    await page.getByLabel('New title').press('Enter');
    await sidebar.getByRole('link', { name: 'Streaming questions', exact: true }).waitFor();
    await page.getByLabel('Search conversations').fill('nothing-matches-this');
    await sidebar.getByText('No conversations').waitFor();
    await page.getByLabel('Search conversations').fill('Streaming');
    await sidebar.getByRole('link', { name: 'Streaming questions', exact: true }).waitFor();
    await page.getByLabel('Search conversations').fill('');

    // API keys: created (shown once), then used against the OpenAI-compatible API.
    await page.goto(`${h.base}/console/#/keys`);
    await page.getByLabel('Key name').fill('e2e key');
    await page.getByRole('button', { name: 'Create key' }).click();
    const key = ((await page.getByTestId('new-key').textContent()) ?? '').trim();
    assert.ok(key.length > 20, key);
    await page.getByRole('row', { name: /e2e key/ }).waitFor();
    await h.shot(page, 'api-keys');
    const completion = async () => {
      const res = await h.chat(key, {
        model: 'demo',
        messages: [{ role: 'user', content: 'hello from a key' }],
      });
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as { choices: { message: { content: string } }[] };
      assert.match(body.choices[0]!.message.content, /demo/);
    };
    await completion();
    await page.reload();
    await page.getByRole('row', { name: /e2e key/ }).waitFor();
    const lastUsed = page.getByRole('row', { name: /e2e key/ }).locator('td[data-label="Last used"]');
    assert.doesNotMatch((await lastUsed.textContent()) ?? '', /never/);

    // Usage: the chart and the table change after more requests.
    await page.goto(`${h.base}/console/#/usage`);
    const totals = page.getByTestId('usage-totals');
    const requests = async () => Number(/(\d+) requests?/.exec((await totals.textContent()) ?? '')?.[1]);
    await until(async () => (await requests()) > 0, 'usage to show requests');
    const before = await requests();
    assert.ok(
      (await page.locator('.chart canvas').count()) >= 4,
      'requests, tokens, cost and latency charts',
    );
    await completion();
    await completion();
    await page.getByRole('button', { name: 'Refresh' }).click();
    await until(async () => (await requests()) >= before + 2, 'usage to count the new requests');
    assert.ok((await requests()) >= before + 2);
    assert.ok((await page.getByRole('table', { name: 'Usage per day' }).getByRole('row').count()) >= 2);
    await h.shot(page, 'usage');

    await page.goto(`${h.base}/console/#/users`);
    await page.getByRole('row', { name: /plain@example.com/ }).waitFor();
    await h.shot(page, 'users');
    await page.goto(`${h.base}/console/#/assistants`);
    await page.getByLabel('Name').fill('Terse helper');
    await page.getByLabel('System prompt').fill('Answer in one sentence.');
    await page.getByRole('button', { name: 'Create assistant' }).click();
    await page.getByRole('row', { name: /Terse helper/ }).waitFor();
    await h.shot(page, 'assistants');

    await page.goto(`${h.base}/console/#/chat`);
    await page.getByRole('link', { name: 'Streaming questions', exact: true }).click();
    await page.getByTestId('msg-assistant').first().waitFor();
    await page.getByLabel('Model or assistant').selectOption('model:demo');
    await page.screenshot({ path: path.join(ARTIFACTS, 'docs-console.png') });
    // The README's screenshot: written when missing, or refreshed on request.
    const docsShot = path.join(ROOT, 'docs', 'console.png');
    if (!existsSync(docsShot) || process.env.UPDATE_DOCS_SCREENSHOT === '1')
      copyFileSync(path.join(ARTIFACTS, 'docs-console.png'), docsShot);

    // Sign out: back to the sign-in form, and the session is gone after a reload.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Colloquy' }).waitFor();
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in to Colloquy' }).waitFor();
    await page.context().close();
  });

  it('an admin watches provider health, usage by model, key and user, cache hits and limit refusals', async () => {
    const adminToken = await h.login(ADMIN);
    const created = await h.api('POST', '/api/keys', adminToken, { name: 'health key' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const key = created.body as { id: string; key: string; prefix: string };
    const call = () => h.chat(key.key, { messages: [{ role: 'user', content: `hello ${Math.random()}` }] });

    // Providers: the route's deployment is healthy, and the page follows new traffic on its own.
    const page = await newPage();
    await h.signIn(page, ADMIN);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Providers' }).click();
    await page.getByText('this replica').waitFor();
    const route = page.getByRole('table', { name: /fake-route/ });
    const deployment = route.getByRole('row', { name: /gpt-4o-mini/ });
    await deployment.getByText(/^healthy/).waitFor();
    for (let i = 0; i < 2; i++) assert.equal((await call()).status, 200);
    await until(
      async () => (await deployment.getByRole('cell').nth(2).textContent({ timeout: 1_000 })) === '2',
      'the page to refresh itself with two attempts',
    ).catch(async (err) => {
      throw new Error(`${err.message}; the row says: ${await deployment.textContent().catch(() => '?')}`);
    });
    assert.equal((await deployment.getByTestId('error-ratio').textContent())?.trim(), '0.0%');
    await h.shot(page, 'providers');

    // Faults injected into the upstream: two failures open the circuit, the ratio goes up.
    h.upstream.queue({ kind: 'status', status: 500 }, { kind: 'status', status: 500 });
    assert.notEqual((await call()).status, 200);
    await deployment.getByText('failing (circuit open)').waitFor({ timeout: 15_000 });
    assert.equal((await deployment.getByTestId('error-ratio').textContent())?.trim(), '50.0%');
    await h.shot(page, 'providers-open');
    await page.emulateMedia({ colorScheme: 'dark' });
    await h.shot(page, 'providers-dark');
    await page.emulateMedia({ colorScheme: 'light' });

    // Usage broken down by model, key and user, with names; the figures follow new requests.
    h.upstream.set({});
    await page.goto(`${h.base}/console/#/usage`);
    const breakdown = page.getByTestId('usage-breakdown');
    const requestsOf = async (name: RegExp) =>
      Number(
        await breakdown.getByRole('row', { name }).getByRole('cell').first().textContent({ timeout: 1_000 }),
      );
    await breakdown.getByRole('row', { name: /demo/ }).waitFor();
    // The deployment is isolated for ten minutes: the next requests use the demo model, by name.
    const demoBefore = await requestsOf(/^demo/);
    const demo = () =>
      h.chat(key.key, { model: 'demo', temperature: 0, messages: [{ role: 'user', content: 'cache me' }] });
    const first = await demo();
    assert.equal(first.status, 200);
    await first.text();
    const repeat = await demo();
    assert.equal(repeat.headers.get('x-cache'), 'hit');
    await repeat.text();
    await page.getByRole('button', { name: 'Refresh' }).click();
    await until(async () => (await requestsOf(/^demo/)) === demoBefore + 2, 'the model breakdown to grow');
    assert.equal(await breakdown.getByRole('row', { name: /fake-route/ }).count(), 1);

    // Keyboard: the dimension is a radio group; arrow keys move through it.
    await page.getByRole('radio', { name: 'Model' }).focus();
    await page.keyboard.press('ArrowRight');
    assert.ok(await page.getByRole('radio', { name: 'API key' }).isChecked());
    const keyRow = breakdown.getByRole('row', { name: new RegExp(`health key \\(${key.prefix}`) });
    await keyRow.waitFor();
    assert.ok((await requestsOf(new RegExp(`health key \\(${key.prefix}`))) >= 5);
    await page.keyboard.press('ArrowRight');
    await breakdown.getByRole('row', { name: /admin@example\.com/ }).waitFor();
    assert.equal(await breakdown.getByText(/^usr_/).count(), 0, 'users are named, not shown as ids');
    // By client API (issue 20): these requests came by chat completions.
    await page.keyboard.press('ArrowRight');
    assert.ok(await page.getByRole('radio', { name: 'API', exact: true }).isChecked());
    await breakdown.getByRole('row', { name: /^chat_completions/ }).waitFor();
    await page.getByRole('radio', { name: 'User' }).check();

    const hits = page.getByTestId('cache-hit-ratio');
    await until(async () => !/^0\.0%/.test((await hits.textContent()) ?? ''), 'a cache hit ratio above zero');

    // A key with no requests allowed: its refusals show up once counted (they are written in batches).
    const limit = await h.api('PUT', `/api/limits/key/${key.id}`, adminToken, {
      limit: 'requests_per_minute',
      value: 0,
    });
    assert.equal(limit.status, 204);
    assert.equal((await call()).status, 429);
    const refused = page.getByTestId('limit-rejections');
    const userRefusals = breakdown
      .getByRole('row', { name: /admin@example\.com/ })
      .getByRole('cell')
      .last();
    // The totals and the breakdown are two requests: a refresh can land between a batch write and the next,
    // so both are awaited, as a user refreshing until the figures agree would.
    await until(
      async () => {
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.waitForTimeout(500);
        return (
          /^[1-9]\d* refused/.test((await refused.textContent()) ?? '') &&
          (await userRefusals.textContent({ timeout: 1_000 })) === '1'
        );
      },
      'the refusal to be counted in the totals and against the user',
      20_000,
    );
    assert.ok(
      (await page.locator('.chart canvas').count()) >= 6,
      'cache hit ratio and rejections charts too',
    );
    await h.shot(page, 'usage-breakdown', true);

    // Phone width: nothing wider than the screen; wide tables scroll inside their own box.
    await page.setViewportSize({ width: 390, height: 844 });
    for (const hash of ['usage', 'providers']) {
      await page.goto(`${h.base}/console/#/${hash}`);
      await page.getByRole('heading', { level: 1 }).waitFor();
      await page.getByRole('table').first().waitFor();
      const overflow = (await page.evaluate(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      )) as number;
      assert.ok(overflow <= 0, `${hash}: the page is ${overflow}px wider than a phone`);
      await h.shot(page, `${hash}-phone`, true);
    }
    await page.context().close();
  });

  it('refuses the admin pages to a plain user, who sees only their own usage', async () => {
    const page = await newPage();
    await h.signIn(page, PLAIN);
    const nav = page.getByRole('navigation', { name: 'Main' });
    assert.equal(await nav.getByRole('link', { name: 'Users' }).count(), 0);
    assert.equal(await nav.getByRole('link', { name: 'Providers' }).count(), 0);
    // Their own keys and private assistants are theirs to manage (test/console/plain-user.test.ts).
    assert.equal(await nav.getByRole('link', { name: 'API keys' }).count(), 1);
    assert.equal(await nav.getByRole('link', { name: 'Assistants' }).count(), 1);
    for (const [hash, label] of [
      ['users', 'Users'],
      ['providers', 'Providers'],
    ]) {
      await page.goto(`${h.base}/console/#/${hash}`);
      const alert = page.getByRole('alert');
      await alert.getByText('Administrators only').waitFor();
      assert.match((await alert.textContent()) ?? '', new RegExp(`${label} page is for administrators`));
    }
    await h.shot(page, 'refused');
    // The server refuses too.
    const plainToken = await h.login(PLAIN);
    assert.equal((await h.api('GET', '/api/users?limit=10', plainToken)).status, 403);
    assert.equal((await h.api('GET', '/api/admin/providers', plainToken)).status, 403);
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.goto(`${h.base}/console/#/usage`);
    await page.getByText('Your own usage.').waitFor();
    // A plain user breaks usage down by model and by their own keys, not by user.
    assert.equal(await page.getByRole('radio', { name: 'User' }).count(), 0);
    await page.getByRole('radio', { name: 'API key' }).check();
    await page.getByTestId('usage-breakdown').getByText('No usage in this range.').waitFor();
    await h.shot(page, 'usage-dark');
    await page.context().close();
  });

  it('ran without Content-Security-Policy violations', () => {
    assert.deepEqual(cspErrors, []);
  });
});
