// Accessibility and small screens (issue 23): axe-core on every page, light and dark; the keyboard (skip
// link, visible focus, Edit moves focus); a 375 px phone: no sideways scroll, buttons on screen (#13).
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { ADMIN, axeViolations, DESKTOP, PLAIN, skipBrowser, until, useHarness } from './harness.js';

const ADMIN_PAGES = [
  'chat',
  'usage',
  'keys',
  'users',
  'assistants',
  'providers',
  'limits',
  'guardrails',
  'audit',
];
/** A plain user's pages: their own keys and private assistants too (issue 23). */
const PLAIN_PAGES = ['chat', 'usage', 'keys', 'assistants'];
const PHONE_375 = { width: 375, height: 740 };

describe('the console’s accessibility and phone layout', { skip: skipBrowser }, () => {
  const h = useHarness();
  let adminToken: string;
  let conversationId: string;

  before(async () => {
    adminToken = await h.login(ADMIN);
    // Something on every page: a conversation with a reply, a key, an assistant, usage, provider traffic.
    const c = await h.api('POST', '/api/conversations', adminToken, { model: 'fake-route' });
    conversationId = c.body.id;
    const m = await h.api('POST', `/api/conversations/${conversationId}/messages`, adminToken, {
      content: 'A question with **Markdown** and `code`',
      stream: false,
    });
    assert.equal(m.status, 201);
    assert.equal((await h.api('POST', '/api/keys', adminToken, { name: 'a11y key' })).status, 201);
    const a = await h.api('POST', '/api/assistants', adminToken, {
      name: 'A11y helper',
      model: 'fake-route',
      system_prompt: 'Be kind.',
      shared: true,
    });
    assert.equal(a.status, 201, JSON.stringify(a.body));
    // The plain user's own key and private assistant, for their pages.
    const plainToken = await h.login(PLAIN);
    assert.equal((await h.api('POST', '/api/keys', plainToken, { name: 'plain a11y key' })).status, 201);
    const p = await h.api('POST', '/api/assistants', plainToken, {
      name: 'Plain helper',
      model: 'fake-route',
    });
    assert.equal(p.status, 201, JSON.stringify(p.body));
  });

  const pageReady = async (page: Page, hash: string) => {
    await page.goto(`${h.base}/console/#/${hash}`);
    await page.getByRole('heading', { level: 1 }).first().waitFor();
    // Loading placeholders gone: the page shows its data.
    await until(async () => (await page.getByText(/^Loading/).count()) === 0, `${hash} to load`);
  };

  /** What is wrong with a page at phone width: sideways scroll, a tall top bar, buttons off screen. */
  const phoneProblems = async (page: Page, hash: string, who = '') => {
    await pageReady(page, hash);
    const problems: string[] = [];
    const m = (await page.evaluate(`(() => {
      const doc = document.documentElement;
      const offscreen = [...document.querySelectorAll('main button, main a, main select, main input')]
        .filter((el) => el.getClientRects().length > 0)
        .filter((el) => { const r = el.getBoundingClientRect(); return r.right > window.innerWidth + 1 || r.left < -1; })
        .filter((el) => !el.closest('.scroll') || el.closest('table.cards'))
        .map((el) => (el.getAttribute('aria-label') || el.textContent || el.tagName).trim().slice(0, 40));
      return {
        overflow: doc.scrollWidth - doc.clientWidth,
        topbar: document.querySelector('.topbar').getBoundingClientRect().height,
        offscreen,
      };
    })()`)) as { overflow: number; topbar: number; offscreen: string[] };
    if (m.overflow > 0) problems.push(`${who}${hash}: ${m.overflow}px wider than the screen`);
    if (m.topbar > 56) problems.push(`${who}${hash}: the top bar is ${m.topbar}px tall`);
    if (m.offscreen.length) problems.push(`${who}${hash}: off screen: ${m.offscreen.join(' | ')}`);
    await h.shot(page, `phone-375-${who}${hash}`, true);
    return problems;
  };

  it('axe-core finds no serious or critical violation on any page, light and dark, admin and plain user', async () => {
    const found: string[] = [];
    const check = async (page: Page, label: string) => {
      for (const v of await axeViolations(page))
        found.push(`${label}: ${v.id} (${v.impact}) ${v.help} — ${v.nodes.join(', ')}`);
    };
    const signInPage = await h.newPage(DESKTOP, 'axe-signin');
    await signInPage.goto(`${h.base}/console/`);
    await signInPage.getByRole('button', { name: 'Sign in' }).waitFor();
    await check(signInPage, 'sign-in (light)');
    await signInPage.emulateMedia({ colorScheme: 'dark' });
    await check(signInPage, 'sign-in (dark)');
    await signInPage.context().close();

    for (const [who, pages] of [
      [ADMIN, [...ADMIN_PAGES, `chat/${conversationId}`, `limits/key/none`]],
      [PLAIN, PLAIN_PAGES],
    ] as const) {
      const page = await h.newPage(DESKTOP, `axe-${who.email}`);
      await h.signIn(page, who);
      for (const scheme of ['light', 'dark'] as const) {
        await page.emulateMedia({ colorScheme: scheme });
        for (const hash of pages) {
          await pageReady(page, hash);
          await check(page, `${who.email} #/${hash} (${scheme})`);
          // A screenshot of every page at desktop width (the phone's are taken below), kept out of git.
          const role = who === ADMIN ? 'admin' : 'user';
          await h.shot(page, `desktop-${role}-${scheme}-${hash.replaceAll('/', '-')}`);
        }
      }
      await page.context().close();
    }
    assert.deepEqual(found, []);
  });

  it('the keyboard: a skip link first, a visible focus ring, and Edit puts focus in the editor', async () => {
    const page = await h.newPage(DESKTOP, 'keyboard');
    await h.signIn(page, ADMIN, `#/chat/${conversationId}`);
    await page.getByTestId('msg-assistant').first().waitFor();
    await page.keyboard.press('Tab');
    const skip = page.getByRole('button', { name: 'Skip to content' });
    assert.equal(await page.evaluate('document.activeElement.textContent'), 'Skip to content');
    const box = await skip.boundingBox();
    assert.ok(box && box.y >= 0 && box.height > 0, 'the focused skip link is on screen');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate('document.activeElement.id'), 'main');
    // The next Tab lands inside the page, past the navigation.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('!!document.activeElement.closest("#main")'), true);
    // The focused control shows a ring (outline), light and dark.
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      const outline = (await page.evaluate(
        '(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()',
      )) as [string, number];
      assert.notEqual(outline[0], 'none', `${scheme}: a focus outline`);
      assert.ok(outline[1] >= 2, `${scheme}: outline ${outline[1]}px`);
    }
    await h.shot(page, 'keyboard-focus');
    // Edit moves focus into the message editor (not the page body); Escape cancels it.
    await page.getByRole('button', { name: 'Edit' }).first().focus();
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate('document.activeElement.id'), 'edit-text');
    await page.keyboard.press('Escape');
    await page.getByRole('button', { name: 'Edit' }).first().waitFor();
    await page.context().close();
  });

  it('at 375 px: no page scrolls sideways, the top bar is one line, tables keep their buttons on screen (#13)', async () => {
    const problems: string[] = [];
    // The plain user's pages first (their keys and assistants show fewer columns and buttons).
    const plainPage = await h.newPage(PHONE_375, 'phone-plain');
    await h.signIn(plainPage, PLAIN);
    for (const hash of PLAIN_PAGES) problems.push(...(await phoneProblems(plainPage, hash, 'user-')));
    await plainPage.context().close();
    const page = await h.newPage(PHONE_375, 'phone');
    await h.signIn(page, ADMIN);
    for (const hash of ADMIN_PAGES) problems.push(...(await phoneProblems(page, hash)));
    assert.deepEqual(problems, []);

    // The chat: the thread fills the screen; the conversation list is a drawer opened from its header.
    await page.goto(`${h.base}/console/#/chat/${conversationId}`);
    await page.getByTestId('msg-assistant').first().waitFor();
    const list = page.getByRole('complementary', { name: 'Conversations' });
    assert.equal(await list.isVisible(), false, 'the list does not sit above the thread');
    const thread = await page.getByRole('region', { name: 'Chat' }).boundingBox();
    assert.ok(thread && thread.y < 80, `the thread starts near the top (${thread?.y}px)`);
    await page.getByRole('button', { name: 'Conversations' }).click();
    await list.waitFor();
    await h.shot(page, 'phone-375-chat-list');
    await list.getByRole('link', { name: 'New chat' }).click();
    await until(async () => !(await list.isVisible()), 'the drawer to close after choosing');
    await page.context().close();
  });
});
