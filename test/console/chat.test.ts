// The chat in a browser (issue 23): what a user sees while replies stream, fail, and conversations switch.
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN, DESKTOP, PHONE, PLAIN, skipBrowser, until, useHarness } from './harness.js';

interface Geometry {
  pageScrolls: boolean;
  fromEnd: number;
  scrollTop: number;
  paneWide: number;
  topbar: number;
  widest: number;
  paneRight: number;
}

describe('the console chat in a browser', { skip: skipBrowser }, () => {
  const h = useHarness();
  let adminToken: string;

  before(async () => {
    adminToken = await h.login(ADMIN);
  });

  const composer = (page: Page) => page.getByLabel('Message', { exact: true });
  const streaming = (page: Page) => page.getByTestId('streaming');
  const idle = (page: Page) => streaming(page).waitFor({ state: 'detached', timeout: 30_000 });
  const sidebar = (page: Page) => page.getByRole('complementary', { name: 'Conversations' });
  const heading = (page: Page) => page.getByRole('heading', { level: 1 });
  /** A conversation with one finished exchange, made through the API. */
  const seed = async (token: string, body: Record<string, unknown>, content: string, model?: string) => {
    const c = await h.api('POST', '/api/conversations', token, body);
    assert.equal(c.status, 201, JSON.stringify(c.body));
    const m = await h.api('POST', `/api/conversations/${c.body.id}/messages`, token, {
      content,
      stream: false,
      ...(model ? { model } : {}),
    });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    return c.body as { id: string; title: string | null };
  };

  it('keeps the thread the user opened while another conversation’s reply streams (#1)', async () => {
    await seed(adminToken, { model: 'demo' }, 'Conversation B asks about bees');
    const page = await h.newPage(DESKTOP, 'switch');
    await h.signIn(page, ADMIN);
    h.upstream.set({ reply: 'alpha '.repeat(100), chunkIntervalMs: 60 });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await composer(page).fill('Conversation A asks about ants');
      await composer(page).press('Enter');
      await until(
        async () => /alpha/.test((await streaming(page).textContent({ timeout: 500 })) ?? ''),
        'A to stream',
      );
      await sidebar(page).getByText('Conversation B asks about bees').click();
      await heading(page).getByText('Conversation B asks about bees').waitFor();
      assert.equal(await streaming(page).count(), 0, 'A’s reply is not shown in B');
      // A keeps replying in the background: its entry (titled when the reply ends) says so.
      await sidebar(page)
        .getByRole('link', { name: /\(replying\)$/ })
        .waitFor();
      await h.shot(page, 'chat-switch-while-streaming');
      // A finishes (on the server), and the page hears of it; B's thread stays B's.
      const list = await h.api('GET', '/api/conversations', adminToken);
      const a = (list.body.data as { id: string; title: string | null }[]).find((c) => c.title === null)!;
      await until(
        async () =>
          (await h.api('GET', `/api/conversations/${a.id}/messages`, adminToken)).body.data.at(-1).status ===
          'complete',
        'A to finish',
        30_000,
      );
      await sidebar(page).getByText('Conversation A asks about ants').waitFor();
      const thread = page.getByRole('region', { name: 'Chat' });
      const text = (await thread.getByRole('list').first().textContent()) ?? '';
      assert.match(text, /bees/);
      assert.doesNotMatch(text, /alpha|ants/, 'A’s messages in B’s thread');
      assert.equal(await page.getByTestId('msg-user').count(), 1);
      // Regenerate in B answers in B.
      await page.getByTestId('msg-assistant').first().getByRole('button', { name: 'Regenerate' }).click();
      await idle(page);
      await page.getByTestId('msg-assistant').first().getByText('2 / 2').waitFor();
      assert.equal(await page.getByRole('alert').count(), 0, 'no error after Regenerate');
      // Back to A: its whole reply.
      await sidebar(page).getByText('Conversation A asks about ants').click();
      await heading(page).getByText('Conversation A asks about ants').waitFor();
      await until(
        async () =>
          ((await page.getByTestId('msg-assistant').first().textContent()) ?? '').split('alpha').length > 100,
        'A’s full reply',
      );
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
      await page.context().close();
    }
  });

  it('shows the title the server gave in the heading (#6), with a URL per conversation', async () => {
    const page = await h.newPage(DESKTOP, 'title');
    await h.signIn(page, ADMIN);
    await page.getByLabel('Model or assistant').selectOption('model:demo');
    await composer(page).fill('What is the tallest mountain on Mars?');
    await composer(page).press('Enter');
    await idle(page);
    await heading(page).getByText('What is the tallest mountain on Mars?').waitFor();
    assert.match(page.url(), /#\/chat\/[^/]+$/);
    const url = page.url();
    // Reload keeps it; New chat, then back, returns to it.
    await page.reload();
    await heading(page).getByText('What is the tallest mountain on Mars?').waitFor();
    await page.getByTestId('msg-assistant').first().waitFor();
    await sidebar(page).getByRole('link', { name: 'New chat' }).click();
    await heading(page).getByText('New chat').waitFor();
    await page.goBack();
    await heading(page).getByText('What is the tallest mountain on Mars?').waitFor();
    assert.equal(page.url(), url);
    await page.context().close();
  });

  it('shows why a reply failed on the message itself, after switching away and after a reload (#5)', async () => {
    const page = await h.newPage(DESKTOP, 'errors');
    await h.signIn(page, ADMIN);
    const reason = 'The prompt is too long for this model';
    h.upstream.queue({
      kind: 'status',
      status: 400,
      body: { error: { message: reason, type: 'invalid_request_error', code: 'context_length_exceeded' } },
    });
    await page.getByLabel('Model or assistant').selectOption('model:fake-route');
    await composer(page).fill('This question will fail upstream');
    await composer(page).press('Enter');
    await idle(page);
    const failure = page.getByTestId('msg-assistant').first().getByTestId('msg-error');
    await failure.waitFor();
    const shown = (await failure.textContent()) ?? '';
    assert.match(shown, /^Failed: .{10,}/, 'a reason, not just a badge');
    await h.shot(page, 'chat-error');
    const url = page.url();
    // Another conversation (here a new one) shows nothing of it.
    await sidebar(page).getByRole('link', { name: 'New chat' }).click();
    await heading(page).getByText('New chat').waitFor();
    assert.equal(await page.getByText(shown.replace(/^Failed: /, '')).count(), 0, 'the error stays behind');
    assert.equal(await page.getByRole('alert').count(), 0);
    // A reload of the failed conversation still says why.
    await page.goto(url);
    await page.reload();
    await page.getByTestId('msg-assistant').first().getByTestId('msg-error').waitFor();
    assert.equal((await page.getByTestId('msg-error').first().textContent()) ?? '', shown);
    await page.context().close();
  });

  it('the picker follows the open conversation: its assistant, else its last model (#3)', async () => {
    const created = await h.api('POST', '/api/assistants', adminToken, {
      name: 'Pirate',
      model: 'demo',
      system_prompt: 'Answer like a pirate.',
      shared: true,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const pirate = created.body.id as string;
    const withAssistant = await seed(adminToken, { assistant_id: pirate }, 'Ahoy there, assistant chat');
    const withDemo = await seed(adminToken, { model: 'demo' }, 'A demo model chat');
    await seed(adminToken, { model: 'fake-route' }, 'A fake route chat');
    const page = await h.newPage(DESKTOP, 'picker');
    await h.signIn(page, ADMIN, `#/chat/${withAssistant.id}`);
    const picker = page.getByLabel('Model or assistant');
    await heading(page).getByText('Ahoy there, assistant chat').waitFor();
    await until(
      async () => (await picker.inputValue()) === `assistant:${pirate}`,
      'the assistant in the picker',
    );
    assert.ok(await picker.isDisabled(), 'an assistant conversation keeps its assistant');
    await sidebar(page).getByText('A fake route chat').click();
    await until(async () => (await picker.inputValue()) === 'model:fake-route', 'fake-route in the picker');
    // The model this conversation last used, not the one used elsewhere.
    await sidebar(page).getByText('A demo model chat').click();
    await until(async () => (await picker.inputValue()) === 'model:demo', 'demo in the picker');
    // An assistant chosen inside a model conversation starts a new chat with it (not silently ignored).
    await picker.selectOption(`assistant:${pirate}`);
    await heading(page).getByText('New chat').waitFor();
    assert.equal(await picker.inputValue(), `assistant:${pirate}`);
    await composer(page).fill('Hello pirate');
    await composer(page).press('Enter');
    await idle(page);
    const newest = (await h.api('GET', '/api/conversations', adminToken)).body.data[0];
    assert.equal(newest.assistant_id, pirate);
    assert.notEqual(newest.id, withDemo.id);
    await page.context().close();
  });

  it('a fixed frame with a message pane that follows the stream, a jump button, and wrapped long words (#7, #8)', async () => {
    const c = await seed(adminToken, { model: 'demo' }, 'A long thread, first question');
    for (let i = 2; i <= 5; i++) {
      const m = await h.api('POST', `/api/conversations/${c.id}/messages`, adminToken, {
        content: `Question number ${i} in the long thread`,
        stream: false,
      });
      assert.equal(m.status, 201);
    }
    h.upstream.set({ reply: `${'y'.repeat(1500)} ${'word '.repeat(150)}`, chunkIntervalMs: 40 });
    try {
      for (const [name, viewport] of [
        ['desktop', DESKTOP],
        ['phone', PHONE],
      ] as const) {
        const page = await h.newPage(viewport, `scroll-${name}`);
        await h.signIn(page, ADMIN, `#/chat/${c.id}`);
        await until(async () => (await page.getByTestId('msg-assistant').count()) >= 5, 'the thread').catch(
          async (err) => {
            await h.shot(page, `debug-${name}`);
            throw new Error(`${err.message}: ${await page.getByTestId('msg-assistant').count()} replies`);
          },
        );
        // Measured in the page (a string: this file is type-checked without the DOM library).
        const geometry = () =>
          page.evaluate(`(() => {
            const pane = document.querySelector('.pane');
            const doc = document.documentElement;
            return {
              pageScrolls: doc.scrollHeight > doc.clientHeight || doc.scrollWidth > doc.clientWidth,
              fromEnd: pane.scrollHeight - pane.scrollTop - pane.clientHeight,
              scrollTop: pane.scrollTop,
              paneWide: pane.scrollWidth - pane.clientWidth,
              topbar: document.querySelector('.topbar').getBoundingClientRect().top,
              widest: Math.max(...[...document.querySelectorAll('.msg')].map((m) => m.getBoundingClientRect().right)),
              paneRight: pane.getBoundingClientRect().right,
            };
          })()`) as Promise<Geometry>;
        let g = await geometry();
        assert.equal(g.pageScrolls, false, `${name}: the page itself does not scroll`);
        assert.ok(g.fromEnd < 50, `${name}: opens at the latest message (${g.fromEnd}px from the end)`);
        await page.getByLabel('Model or assistant').selectOption('model:fake-route');
        await composer(page).fill(`An unbroken word: ${'x'.repeat(1500)}`);
        await composer(page).press('Enter');
        // While it streams, the pane follows (three looks, each at the end).
        for (let i = 0; i < 3; i++) {
          await until(
            async () => ((await streaming(page).textContent({ timeout: 500 })) ?? '').length > 1500 + i * 60,
            'more of the reply',
          );
          g = await geometry();
          assert.ok(g.fromEnd < 50, `${name}: follows the stream (${g.fromEnd}px from the end)`);
          assert.equal(g.topbar, 0, `${name}: the top bar stays`);
          assert.equal(g.pageScrolls, false);
        }
        assert.ok(
          g.paneWide <= 0 && g.widest <= g.paneRight + 1,
          `${name}: long words wrap (${JSON.stringify(g)})`,
        );
        await h.shot(page, `chat-streaming-${name}`);
        // Scrolled up: the pane stays put as the reply grows, and offers the way back.
        // The scroll event is dispatched at once, as a user's own scrolling delivers it before the next frame:
        // otherwise a chunk arriving before the browser's own event would find the pane still following.
        await page.evaluate(`(() => {
          const pane = document.querySelector('.pane');
          pane.scrollTop = 0;
          pane.dispatchEvent(new Event('scroll'));
        })()`);
        const jump = page.getByRole('button', { name: /Jump to latest/ });
        await jump.waitFor();
        const len = ((await streaming(page).textContent()) ?? '').length;
        await until(
          async () => ((await streaming(page).textContent({ timeout: 500 })) ?? '').length > len + 30,
          'the reply to grow',
        );
        assert.ok((await geometry()).scrollTop < 5, `${name}: reading up there is not interrupted`);
        await h.shot(page, `chat-scrolled-up-${name}`);
        await page.emulateMedia({ colorScheme: 'dark' });
        await h.shot(page, `chat-scrolled-up-${name}-dark`);
        await jump.click();
        await until(async () => (await geometry()).fromEnd < 50, 'back at the end');
        await jump.waitFor({ state: 'detached' });
        await idle(page);
        g = await geometry();
        assert.ok(g.fromEnd < 50 && g.widest <= g.paneRight + 1 && !g.pageScrolls, JSON.stringify(g));
        await page.context().close();
      }
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
    }
  });

  it('sanitises each finished message once while a reply streams (#15)', async () => {
    const c = await seed(adminToken, { model: 'demo' }, 'SANITISE-ONCE-MARKER please');
    const page = await h.newPage(DESKTOP, 'sanitise');
    // DOMPurify parses every input with DOMParser: count the parses of the finished reply's HTML.
    await page.addInitScript(`
      window.markerParses = 0;
      const parse = DOMParser.prototype.parseFromString;
      DOMParser.prototype.parseFromString = function (text, type) {
        if (String(text).includes('SANITISE-ONCE-MARKER')) window.markerParses++;
        return parse.call(this, text, type);
      };
    `);
    await h.signIn(page, ADMIN, `#/chat/${c.id}`);
    await page.getByTestId('msg-assistant').first().waitFor();
    const parses = () => page.evaluate('window.markerParses') as Promise<number>;
    const before = await parses();
    assert.ok(before >= 1, `parsed ${before} times on opening`);
    h.upstream.set({ reply: 'chunk '.repeat(40), chunkIntervalMs: 10 });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await composer(page).fill('Another question');
      await composer(page).press('Enter');
      await streaming(page).waitFor();
      await idle(page);
      assert.ok((await page.getByTestId('msg-assistant').nth(1).textContent())?.includes('chunk chunk'));
      const during = (await parses()) - before;
      assert.ok(during <= 1, `the finished reply was sanitised ${during} more times during one stream`);
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
      await page.context().close();
    }
  });

  it('says it is loading instead of "No conversations" (#12), at phone width, and Escape stops a reply', async () => {
    const page = await h.newPage(PHONE, 'loading');
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    await page.route(/\/api\/conversations\?/, async (route) => {
      await Promise.race([held, new Promise((r) => setTimeout(r, 10_000))]);
      await route.continue();
    });
    await h.signIn(page, PLAIN);
    // At phone width the list is a drawer over the thread (#13): opened from the thread's header.
    await page.getByRole('button', { name: 'Conversations' }).click();
    await sidebar(page).getByText('Loading conversations…').waitFor();
    assert.equal(await sidebar(page).getByText('No conversations').count(), 0);
    await h.shot(page, 'chat-loading-phone');
    release();
    await sidebar(page).getByText('No conversations').waitFor();
    await page.getByRole('button', { name: 'Close list' }).click();
    await page.unroute(/\/api\/conversations\?/);
    // Escape stops the reply (kept as partial).
    h.upstream.set({ reply: 'slow '.repeat(200), chunkIntervalMs: 40 });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await composer(page).fill('Tell me a long story');
      await composer(page).press('Enter');
      await until(
        async () => ((await streaming(page).textContent({ timeout: 500 })) ?? '').length > 30,
        'the reply',
      );
      await page.keyboard.press('Escape');
      await idle(page);
      await page.getByTestId('msg-assistant').first().getByText('partial').waitFor();
      await h.shot(page, 'chat-phone');
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
      await page.context().close();
    }
  });

  it('the usage page says it is loading instead of "No usage in this range" (#12)', async () => {
    const page = await h.newPage(DESKTOP, 'usage-loading');
    await h.signIn(page, PLAIN);
    let release: () => void = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    await page.route(/\/api\/usage\?/, async (route) => {
      await Promise.race([held, new Promise((r) => setTimeout(r, 10_000))]);
      await route.continue();
    });
    await page.goto(`${h.base}/console/#/usage`);
    await page.getByText('Loading usage…').first().waitFor();
    assert.equal(await page.getByText('No usage in this range.').count(), 0);
    release();
    await page.getByTestId('usage-totals').waitFor();
    await until(async () => (await page.getByText('Loading usage…').count()) === 0, 'usage to load');
    await page.context().close();
  });

  it('an assistant made in the console reaches plain users when shared (#2)', async () => {
    const admin = await h.newPage(DESKTOP, 'assistants');
    await h.signIn(admin, ADMIN, '#/assistants');
    await admin.getByLabel('Name').fill('Team helper');
    await admin.getByLabel('System prompt').fill('Answer briefly.');
    assert.ok(await admin.getByLabel('Shared with every user').isChecked(), 'shared unless unticked');
    await admin.getByRole('button', { name: 'Create assistant' }).click();
    await admin
      .getByRole('row', { name: /Team helper/ })
      .getByText('Every user')
      .waitFor();
    await admin.getByLabel('Name').fill('Admin private helper');
    await admin.getByLabel('Shared with every user').uncheck();
    await admin.getByRole('button', { name: 'Create assistant' }).click();
    await admin
      .getByRole('row', { name: /Admin private helper/ })
      .getByText('Only its owner')
      .waitFor();
    await h.shot(admin, 'assistants-shared');
    await admin.context().close();

    const plain = await h.newPage(PHONE, 'plain-assistant');
    await h.signIn(plain, PLAIN);
    const picker = plain.getByLabel('Model or assistant');
    await picker.getByRole('option', { name: 'Team helper' }).waitFor({ state: 'attached' });
    assert.equal(await picker.getByRole('option', { name: 'Admin private helper' }).count(), 0);
    await picker.selectOption({ label: 'Team helper' });
    await composer(plain).fill('Hello team helper');
    await composer(plain).press('Enter');
    await idle(plain);
    await plain.getByTestId('msg-assistant').first().waitFor();
    assert.equal(await plain.getByRole('alert').count(), 0);
    await plain.context().close();
  });

  it('a reply without text is not an empty bubble; a tool-calling reply shows its calls, live and reloaded (#4)', async () => {
    const page = await h.newPage(DESKTOP, 'tools');
    await h.signIn(page, ADMIN);
    h.upstream.set({ reply: '' });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await composer(page).fill('Say nothing');
      await composer(page).press('Enter');
      await idle(page);
      await page.getByTestId('msg-assistant').first().getByText('(empty reply)').waitFor();
      // A model that calls a tool: the reply is the call, stored and returned by the conversation API.
      h.upstream.set({ toolCall: { name: 'get_weather', arguments: '{"location":"Paris","unit":"c"}' } });
      await page.getByRole('link', { name: 'New chat' }).click();
      await composer(page).fill('What is the weather in Paris?');
      await composer(page).press('Enter');
      const call = page.getByTestId('tool-call');
      await call.waitFor();
      assert.match(
        (await call.textContent()) ?? '',
        /get_weather[\s\S]*"location": "Paris"[\s\S]*"unit": "c"/,
      );
      assert.equal(await page.getByText('(empty reply)').count(), 0);
      await page.reload();
      await call.waitFor();
      assert.match((await call.textContent()) ?? '', /Tool call: get_weather/);
      assert.equal(await page.getByText('(empty reply)').count(), 0);
      await h.shot(page, 'chat-tool-calls');
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', toolCall: null });
    }
    await page.context().close();
  });

  it('a reload while a reply streams re-joins it: the reply keeps growing, Stop works, nothing is lost', async () => {
    const page = await h.newPage(DESKTOP, 'rejoin');
    await h.signIn(page, ADMIN);
    const words = Array.from({ length: 60 }, (_, i) => `w${i}`);
    h.upstream.set({ reply: words.join(' '), chunkIntervalMs: 80 });
    try {
      await page.getByLabel('Model or assistant').selectOption('model:fake-route');
      await composer(page).fill('Count slowly');
      await composer(page).press('Enter');
      await until(
        async () => /w5\b/.test((await streaming(page).textContent({ timeout: 500 })) ?? ''),
        'the reply',
      );
      let rejoined = 0;
      page.on('request', (r) => {
        if (/\/api\/generations\/[^/]+\/events/.test(r.url())) rejoined++;
      });
      await page.reload();
      // After the reload: the question, and the reply streaming again from the server's event log.
      await page.getByTestId('msg-user').getByText('Count slowly').waitFor();
      await until(
        async () => /w2\d\b/.test((await streaming(page).textContent({ timeout: 500 })) ?? ''),
        'the reply to grow after the reload',
      );
      assert.equal(rejoined, 1);
      assert.ok(await page.getByRole('button', { name: 'Stop' }).isVisible());
      await idle(page);
      const reply = page.getByTestId('msg-assistant').first();
      assert.match((await reply.textContent()) ?? '', /w0 w1 w2[\s\S]*w59/);
      assert.equal(await reply.getByText('partial').count(), 0);
      assert.equal(await page.getByRole('alert').count(), 0);
      // A second reload after the end: no stream to re-join.
      await page.reload();
      await page.getByTestId('msg-assistant').first().waitFor();
      assert.equal(rejoined, 1);
      assert.equal(await streaming(page).count(), 0);
    } finally {
      h.upstream.set({ reply: 'Hello from the fake upstream, streaming word by word.', chunkIntervalMs: 0 });
      await page.context().close();
    }
  });

  it('ran without console errors (a missing favicon, a CSP violation or an uncaught error would show here)', () => {
    assert.deepEqual(h.consoleErrors, []);
  });
});
