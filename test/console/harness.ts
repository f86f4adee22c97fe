// A real `colloquy serve` (SQLite, the demo model and a route to a fake upstream whose pace and faults the
// tests control), an admin and a plain user, and headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) for the console's browser tests; `useHarness` gives a describe block its own. Below it, the
// helpers several of those tests share (dialogs, axe-core light and dark, what reached the upstream).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { type FakeUpstream, startFakeUpstream } from '../fake-upstream/server.js';
import { freePort } from '../helpers/net.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'console');
const ADMIN_KEY = 'console-harness-admin-key-0123456789abcdef';
const UPSTREAM_KEY = 'sk-console-harness-fake-upstream';
export const ADMIN = { email: 'admin@example.com', password: 'admin-password-123' };
export const PLAIN = { email: 'plain@example.com', password: 'plain-password-123' };
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

const ci = process.env.CI === 'true' || process.env.CI === '1';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && ci) throw new Error(`console browser tests: ${CHROMIUM} is missing (required in CI)`);
export const skipBrowser = haveChromium
  ? false
  : `console browser tests NOT RUN: ${CHROMIUM} is missing (run .ci/install-console-tools)`;
if (skipBrowser) console.log(`note: ${skipBrowser}`);

/** Polls `check` (run here, not in the page) until it holds. */
export async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// biome-ignore lint/suspicious/noExplicitAny: API answers are read loosely in tests (asserted field by field)
type Json = any;

export interface Harness {
  base: string;
  upstream: FakeUpstream;
  browser: Browser;
  /** Console errors and uncaught page errors of every page opened, with the page's label. */
  consoleErrors: string[];
  api(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; body: Json }>;
  /** POST /v1/chat/completions: "hi" to fake-route, unless `body` says otherwise (its fields replace those). */
  chat(token: string, body?: Record<string, unknown>): Promise<Response>;
  /** The id of the user with this email, as an admin lists it. */
  userId(adminToken: string, email: string): Promise<string>;
  login(who: { email: string; password: string }): Promise<string>;
  newPage(viewport?: { width: number; height: number }, label?: string): Promise<Page>;
  signIn(page: Page, who: { email: string; password: string }, hash?: string): Promise<void>;
  shot(page: Page, name: string, fullPage?: boolean): Promise<unknown>;
  close(): Promise<void>;
}

/** axe-core's browser bundle, evaluated in the page (through DevTools: the console's CSP does not apply). */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** axe-core's serious and critical violations on the page as it is now (WCAG 2.x A and AA rules). */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await page.evaluate('typeof window.axe !== "undefined"'))) await page.evaluate(AXE_SOURCE);
  return (await page.evaluate(`(async () => {
    const r = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      resultTypes: ['violations'],
    });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  })()`)) as AxeViolation[];
}

/** Adds to the server's environment; as a function it gets the port first (for PUBLIC_URL). */
export type HarnessEnv = Record<string, string> | ((port: number) => Record<string, string>);

export interface HarnessOptions {
  /** fake-route's circuit breaker: by default it stays closed through a test's few failures. */
  breaker?: { failures: number; cooldown_ms: number };
}

export async function startHarness(env: HarnessEnv = {}, options: HarnessOptions = {}): Promise<Harness> {
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'ensure-ready.mjs')], { stdio: 'inherit' });
  mkdirSync(ARTIFACTS, { recursive: true });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-console-chat-'));
  const upstream = await startFakeUpstream({ apiKey: UPSTREAM_KEY });
  const routing = path.join(dir, 'routing.json');
  writeFileSync(
    routing,
    JSON.stringify({
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the routing file's own ${VAR} syntax
      providers: [{ name: 'fake', type: 'openai', base_url: upstream.baseUrl, api_key: '${FAKE_API_KEY}' }],
      models: [{ name: 'fake-route', deployments: [{ provider: 'fake', model: 'gpt-4o-mini' }] }],
      router: {
        backoff: { initial_ms: 10, max_ms: 20 },
        circuit_breaker: options.breaker ?? { failures: 50, cooldown_ms: 1_000 },
      },
    }),
  );
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let output = '';
  const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, 'dist', 'main.js'), 'serve'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
      COLLOQUY_ADMIN_KEY: ADMIN_KEY,
      DEMO_WORD_DELAY_MS: '5',
      LOG_LEVEL: 'warn',
      COLLOQUY_CONFIG: routing,
      FAKE_API_KEY: UPSTREAM_KEY,
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...(typeof env === 'function' ? env(port) : env),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  // Generous: the machine running the tests may be busy (a server starts in about a second when idle).
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited:\n${output}`);
    if (
      await fetch(`${base}/health/live`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) throw new Error(`the server did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const api: Harness['api'] = async (method, url, token, body) => {
    const res = await fetch(base + url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : null,
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  for (const [who, role] of [
    [ADMIN, 'admin'],
    [PLAIN, 'user'],
  ] as const) {
    const res = await api('POST', '/api/users', ADMIN_KEY, { ...who, role });
    assert.equal(res.status, 201, JSON.stringify(res.body));
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const consoleErrors: string[] = [];
  return {
    base,
    upstream,
    browser,
    consoleErrors,
    api,
    chat: (token, body = {}) =>
      fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fake-route', messages: [{ role: 'user', content: 'hi' }], ...body }),
      }),
    async userId(adminToken, email) {
      const users = await api('GET', '/api/users?limit=100', adminToken);
      return users.body.data.find((u: { email: string }) => u.email === email).id;
    },
    async login(who) {
      const res = await api('POST', '/api/auth/login', '', who);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.access_token as string;
    },
    async newPage(viewport = DESKTOP, label = 'page') {
      const context = await browser.newContext({ viewport });
      const page = await context.newPage();
      page.setDefaultTimeout(15_000); // every wait ends
      page.on('console', (m) => {
        if (m.type() === 'error') consoleErrors.push(`${label}: ${m.text()} (${m.location().url})`);
      });
      page.on('pageerror', (e) => consoleErrors.push(`${label}: uncaught ${e.message}`));
      return page;
    },
    async signIn(page, who, hash = '') {
      await page.goto(`${base}/console/${hash}`);
      await page.getByLabel('Email').fill(who.email);
      await page.getByLabel('Password').fill(who.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
    },
    shot: (page, name, fullPage = false) =>
      page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage }),
    async close() {
      await browser.close();
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The harness of a describe block: started before its tests, closed after them. The object is filled in by
 * the first before hook of the block, so read it inside hooks and tests only (the block's own before hooks,
 * registered after this call, run after it).
 */
export function useHarness(env?: HarnessEnv, options?: HarnessOptions): Harness {
  const h = {} as Harness;
  before(async () => {
    Object.assign(h, await startHarness(env, options));
  });
  after(async () => {
    await h.close?.();
  });
  return h;
}

/** Answers the page's next alert/confirm with `accept` and returns its text. */
export const nextDialog = (page: Page, accept: boolean) =>
  new Promise<string>((resolve) => {
    page.once('dialog', async (d) => {
      resolve(d.message());
      if (accept) await d.accept();
      else await d.dismiss();
    });
  });

/** Whether the page is wider than the screen (a user would have to scroll sideways). */
export const scrollsSideways = (page: Page) =>
  page.evaluate(
    'document.documentElement.scrollWidth > document.documentElement.clientWidth',
  ) as Promise<boolean>;

/** axe-core in the light, then the dark scheme (the page is left dark): no serious or critical violation. */
export async function assertAxeLightAndDark(page: Page, label: string) {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    assert.deepEqual(await axeViolations(page), [], `axe: ${label}, ${scheme}`);
  }
}

/** A chat request the fake upstream received: the settings the console sends with it. */
export type SentChat = {
  temperature?: number;
  max_tokens?: number;
  messages: { role: string; content: unknown }[];
};

/** The chat request (not a title request) whose last message is `text`, once it has reached the upstream. */
export async function sentToUpstream(h: Harness, text: string, from: number): Promise<SentChat> {
  let found: SentChat | undefined;
  await until(async () => {
    found = h.upstream.requests
      .slice(from)
      .filter((r) => r.path === '/v1/chat/completions')
      .map((r) => r.body as unknown as SentChat)
      .find((b) => b.messages.at(-1)?.content === text);
    return found !== undefined;
  }, `the request for "${text}"`);
  return found!;
}

/** Waits until the chat shows `n` replies and none is still streaming. */
export const repliesDone = (page: Page, n: number) =>
  until(
    async () =>
      (await page.getByTestId('msg-assistant').count()) >= n &&
      (await page.getByTestId('streaming').count()) === 0,
    `${n} replies`,
    30_000,
  );
