// The chat's Copy buttons (issue 23): a message's Markdown source, and a code block's code, reach the
// clipboard (read back through the browser's own clipboard API), and the button says "Copied".
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { ADMIN, DESKTOP, skipBrowser, until, useHarness } from './harness.js';

const REPLY = 'Run this:\n\n```js\nconsole.log("copied exactly");\n```\n\nThen **smile**.';

describe('console: Copy buttons on messages and code blocks', { skip: skipBrowser }, () => {
  const h = useHarness();
  let conversationId: string;

  before(async () => {
    h.upstream.set({ reply: REPLY });
    const token = await h.login(ADMIN);
    const c = await h.api('POST', '/api/conversations', token, { model: 'fake-route' });
    conversationId = c.body.id;
    const m = await h.api('POST', `/api/conversations/${conversationId}/messages`, token, {
      content: 'How do I print?',
      stream: false,
    });
    assert.equal(m.status, 201, JSON.stringify(m.body));
  });

  it('copies a code block’s code and a whole message’s Markdown', async () => {
    const page = await h.newPage(DESKTOP, 'copy');
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: h.base });
    await h.signIn(page, ADMIN, `#/chat/${conversationId}`);
    const reply = page.getByTestId('msg-assistant').first();
    await reply.getByText('console.log("copied exactly");').waitFor();
    const clipboard = () => page.evaluate('navigator.clipboard.readText()') as Promise<string>;

    const codeCopy = reply.getByRole('button', { name: 'Copy code' });
    await codeCopy.click();
    await until(async () => (await codeCopy.textContent()) === 'Copied', 'the code button to say Copied');
    assert.equal(await clipboard(), 'console.log("copied exactly");\n');

    await reply.getByRole('button', { name: 'Copy message' }).click();
    await until(async () => (await clipboard()) === REPLY, 'the reply’s Markdown in the clipboard');
    const question = page.getByTestId('msg-user').first();
    await question.getByRole('button', { name: 'Copy message' }).click();
    await until(async () => (await clipboard()) === 'How do I print?', 'the question in the clipboard');
    await h.shot(page, 'chat-copy');
    assert.deepEqual(h.consoleErrors, []);
  });
});
