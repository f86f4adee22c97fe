// A real `colloquy serve` (SQLite, the demo model and a route to a fake upstream whose pace and faults the
// tests control), an admin and a plain user, and headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) for the console's browser tests.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
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

/** `env` adds to the server's environment; as a function it gets the port first (for PUBLIC_URL). */
export async function startHarness(
  env: Record<string, string> | ((port: number) => Record<string, string>) = {},
): Promise<Harness> {
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
        circuit_breaker: { failures: 50, cooldown_ms: 1_000 },
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
