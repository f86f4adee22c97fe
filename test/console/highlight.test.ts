// Syntax highlighting of fenced code blocks in chat messages (issue 23): coloured by highlight.js classes in
// light and dark (axe-core's contrast rule passes), loaded only when a code block needs it, under the console's
// CSP (no inline styles: a violation would be a console error), and model output stays sanitised.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN, axeViolations, DESKTOP, skipBrowser, useHarness } from './harness.js';

const REPLY = [
  'In TypeScript:',
  '',
  '```ts',
  'const greeting: string = "hello"; // say it',
  'function twice(n: number) { return n * 2; }',
  '```',
  '',
  'In Python:',
  '',
  '```python',
  'def area(r):',
  '    return 3.14 * r ** 2',
  '```',
  '',
  'A language it does not know, and HTML that must stay text:',
  '',
  '```klingon',
  'qaStaH nuq?',
  '```',
  '',
  '```html',
  '<img src=x onerror="document.title=\'pwned\'"><b>bold?</b>',
  '```',
].join('\n');

describe('console: syntax highlighting of code blocks', { skip: skipBrowser }, () => {
  const h = useHarness();
  let withCode: string;
  let withoutCode: string;

  before(async () => {
    const token = await h.login(ADMIN);
    const ask = async (reply: string) => {
      h.upstream.set({ reply });
      const c = await h.api('POST', '/api/conversations', token, { model: 'fake-route' });
      const m = await h.api('POST', `/api/conversations/${c.body.id}/messages`, token, {
        content: 'Show me some code',
        stream: false,
      });
      assert.equal(m.status, 201, JSON.stringify(m.body));
      return c.body.id as string;
    };
    withoutCode = await ask('Plain words, no code at all.');
    withCode = await ask(REPLY);
  });

  /** The computed text colour (the tests are type-checked without the DOM library: the window, typed here). */
  type Win = { getComputedStyle(e: unknown): { color: string } };
  const colour = (page: Page, selector: string) =>
    page
      .locator(selector)
      .first()
      .evaluate((e) => (globalThis as unknown as Win).getComputedStyle(e).color);

  it('colours known languages, light and dark, loading the highlighter only for code', async () => {
    const page = await h.newPage(DESKTOP, 'highlight');
    const chunks: string[] = [];
    page.on('request', (r) => {
      if (/\/assets\/highlight-[\w-]+\.js$/.test(r.url())) chunks.push(r.url());
    });
    await h.signIn(page, ADMIN, `#/chat/${withoutCode}`);
    await page.getByText('Plain words, no code at all.').waitFor();
    assert.deepEqual(chunks, [], 'no highlighter without code blocks');

    await page.goto(`${h.base}/console/#/chat/${withCode}`);
    const reply = page.getByTestId('msg-assistant').first();
    const ts = reply.locator('pre code.language-ts');
    await ts.locator('.hljs-keyword', { hasText: 'const' }).waitFor();
    assert.equal(chunks.length, 1, 'the highlighter chunk, once');
    await ts.locator('.hljs-string', { hasText: '"hello"' }).waitFor();
    await ts.locator('.hljs-comment', { hasText: '// say it' }).waitFor();
    await reply.locator('pre code.language-python .hljs-keyword', { hasText: 'def' }).waitFor();
    // The code itself is unchanged (what Copy takes).
    assert.equal(
      await ts.textContent(),
      'const greeting: string = "hello"; // say it\nfunction twice(n: number) { return n * 2; }\n',
    );
    // Unknown language: plain. HTML: shown as text, nothing of it became an element.
    assert.equal(await reply.locator('pre code.language-klingon span').count(), 0);
    assert.equal(await reply.locator('pre code.language-klingon').textContent(), 'qaStaH nuq?\n');
    const html = reply.locator('pre code.language-html');
    assert.match((await html.textContent()) ?? '', /<img src=x onerror=/);
    assert.equal(await html.locator('img, b').count(), 0);
    assert.equal(await html.locator('[style], [onerror]').count(), 0);
    assert.notEqual(await page.title(), 'pwned');

    const seen: Record<string, string[]> = {};
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      seen[scheme] = [
        await colour(page, 'pre code.language-ts'),
        await colour(page, 'pre code.language-ts .hljs-keyword'),
        await colour(page, 'pre code.language-ts .hljs-string'),
        await colour(page, 'pre code.language-ts .hljs-comment'),
      ];
      const [plain, keyword, string, comment] = seen[scheme]!;
      assert.equal(new Set([plain, keyword, string, comment]).size, 4, `four colours (${scheme})`);
      assert.deepEqual(await axeViolations(page), [], `axe (${scheme})`);
      await h.shot(page, `chat-highlight-${scheme}`);
    }
    assert.notDeepEqual(seen.light, seen.dark, 'each theme has its own colours');
    assert.deepEqual(h.consoleErrors, [], 'no console errors (a CSP violation is one)');
    await page.context().close();
  });
});
