// A reply outliving the access token it was asked with (issue 23): the server ends the stream with
// `event: closed` (docs/conversations.md, Revocation) while the generation runs on; the console refreshes
// its token and re-joins the generation from the last event it saw — the user sees one unbroken reply.
// Slow by nature: access tokens live at least a minute (ACCESS_TOKEN_EXPIRE_MINUTES=1).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ADMIN, DESKTOP, skipBrowser, until, useHarness } from './harness.js';

describe('the console chat when the server closes a reply’s stream', { skip: skipBrowser }, () => {
  const h = useHarness({ ACCESS_TOKEN_EXPIRE_MINUTES: '1' });

  it('re-joins the generation with a fresh token after `event: closed`: the whole reply, no error', async () => {
    const page = await h.newPage(DESKTOP, 'closed');
    const seen = { rejoins: 0, refreshes: 0, closed: 0 };
    page.on('request', (r) => {
      if (/\/api\/generations\/[^/]+\/events/.test(r.url())) seen.rejoins++;
      if (r.url().endsWith('/api/auth/refresh')) seen.refreshes++;
    });
    page.on('response', async (r) => {
      if (/\/api\/conversations\/[^/]+\/messages$/.test(r.url()) && r.request().method() === 'POST') {
        const body = await r.text().catch(() => '');
        if (/^event: closed$/m.test(body)) seen.closed++;
      }
    });
    await h.signIn(page, ADMIN);
    // 80 words, one every 0.9 s: the reply runs past the token's minute.
    const words = Array.from({ length: 80 }, (_, i) => `n${i}`);
    h.upstream.set({ reply: words.join(' '), chunkIntervalMs: 900 });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await page.getByLabel('Message', { exact: true }).fill('Count to eighty, slowly');
      await page.getByLabel('Message', { exact: true }).press('Enter');
      await page.getByTestId('streaming').waitFor();
      await until(async () => seen.rejoins > 0, 'the console to re-join after the stream closed', 90_000);
      assert.ok(seen.refreshes >= 1, 'a fresh access token first');
      await page.getByTestId('streaming').waitFor({ state: 'detached', timeout: 60_000 });
      const reply = page.getByTestId('msg-assistant').first();
      const text = (await reply.textContent()) ?? '';
      assert.match(text, new RegExp(words.join(' ')), 'every word, once, in order');
      assert.equal(await reply.getByText(/partial|error/).count(), 0);
      assert.equal(await page.getByRole('alert').count(), 0);
      assert.ok(await page.getByRole('button', { name: 'Sign out' }).isVisible(), 'still signed in');
      assert.equal(seen.closed, 1, 'the server did close the first stream');
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
      await page.context().close();
    }
  });
});
