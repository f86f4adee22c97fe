import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChatGateway } from '../../src/providers/router/types.js';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';
import { type FakeSentry, startFakeSentry } from '../helpers/fake-sentry.js';

const PROMPT = 'my-very-private-prompt-about-the-merger-7731';
const COOKIE = 'session=cookie-secret-value-5521';
const UPSTREAM_SECRET = 'sk-upstream-secret-in-an-error-message-0042';

/** A gateway whose model call fails with a bug of ours (a 500), its message naming a credential. */
const failingGateway = (): ChatGateway => ({
  complete: async () => {
    throw new Error(`upstream client misconfigured with key ${UPSTREAM_SECRET}`);
  },
  stream: async () => {
    throw new Error('not used');
  },
  listModels: async () => [{ id: 'demo', owned_by: 'colloquy' }],
  hasModel: () => true,
});

/** An OTLP/HTTP collector (tracing on, as in production): keeps the trace ids of the spans it receives. */
async function startSink() {
  const traceIds = new Set<string>();
  const server = http.createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    for (const match of body.matchAll(/"traceId":"([0-9a-f]{32})"/g)) traceIds.add(match[1]!);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    traceIds,
    close: () => server.close(),
  };
}

describe('error tracking (Sentry envelopes)', () => {
  let sentry: FakeSentry;
  let sink: Awaited<ReturnType<typeof startSink>>;
  let t: TestApp;
  before(async () => {
    sentry = await startFakeSentry();
    sink = await startSink();
    t = await startTestApp({
      gateway: failingGateway(),
      env: {
        SENTRY_DSN: sentry.dsn,
        SENTRY_ENVIRONMENT: 'rehearsal',
        COLLOQUY_TRACK: 'canary',
        OPENAI_API_KEY: UPSTREAM_SECRET,
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
      },
    });
  });
  after(async () => {
    await t.close();
    await sentry.close();
    sink.close();
  });

  it('reports a 500 with ids and tags, and nothing of the body, prompt, cookies or credentials', async () => {
    const user = await createUser(t, 'sentry-user@example.com');
    const created = await t.inject({
      method: 'POST',
      url: '/api/keys',
      headers: bearer(user.accessToken),
      payload: { name: 'sentry test' },
    });
    assert.equal(created.statusCode, 201, created.body);
    const key = created.json() as { id: string; key: string };

    // A 4xx first: never reported.
    const bad = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(key.key), cookie: COOKIE },
      payload: { model: 'demo', messages: 'not-a-list' },
    });
    assert.equal(bad.statusCode, 400);

    const res = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(key.key), cookie: COOKIE, 'x-request-id': 'sentry-req-500' },
      payload: { model: 'demo', messages: [{ role: 'user', content: PROMPT }] },
    });
    assert.equal(res.statusCode, 500, res.body);
    await eventually(() => sentry.events().length >= 1, 10_000, 'the 500 reaches the fake Sentry');

    const events = sentry.events();
    assert.equal(events.length, 1, 'only the 500 is reported, not the 400');
    const event = events[0] as {
      tags: Record<string, string>;
      release: string;
      environment: string;
      user?: { id: string };
      exception: { values: { type: string; value: string }[] };
    };
    const traceId = /"trace_id":"([0-9a-f]{32})"/.exec(t.logText())?.[1];
    assert.ok(traceId, 'the request was traced');
    assert.deepEqual(
      {
        request_id: event.tags.request_id,
        route: event.tags.route,
        method: event.tags.method,
        status: event.tags.status,
        code: event.tags.code,
        user_id: event.tags.user_id,
        api_key_id: event.tags.api_key_id,
        track: event.tags.track,
        release: event.tags.release,
      },
      {
        request_id: 'sentry-req-500',
        route: '/v1/chat/completions',
        method: 'POST',
        status: '500',
        code: 'internal_error',
        user_id: user.id,
        api_key_id: key.id,
        track: 'canary',
        release: 'colloquy@0.1.0',
      },
    );
    assert.ok(
      t.logText().includes(`"trace_id":"${event.tags.trace_id}"`),
      'the OTel trace id of the request, as logged',
    );
    assert.equal(event.release, 'colloquy@0.1.0');
    assert.equal(event.environment, 'rehearsal');
    assert.deepEqual(event.user, { id: user.id });
    assert.match(event.exception.values.at(-1)?.value ?? '', /misconfigured with key \[Filtered\]/);

    // The whole envelope, byte for byte: none of what the client sent or the server's secrets.
    const raw = Buffer.concat(sentry.envelopes.map((e) => e.raw)).toString('utf8');
    for (const secret of [
      PROMPT,
      key.key,
      TEST_MASTER_KEY,
      UPSTREAM_SECRET,
      'cookie-secret-value',
      'authorization',
      'Bearer',
      user.accessToken,
      '"messages"',
    ]) {
      assert.ok(!raw.includes(secret), `the envelope must not contain ${secret}`);
    }
    assert.ok(!/"request"\s*:/.test(raw), 'no request interface (url, headers, body, cookies)');
    assert.ok(!raw.includes('"breadcrumbs"'), 'no breadcrumbs');
    assert.equal(sentry.rejected, 0, 'every envelope was authenticated with the DSN key');
  });

  it('leaves OpenTelemetry export alone, and sends what is queued when the app closes', async () => {
    // A slow endpoint: the report is still in flight when shutdown starts, and shutdown waits for it.
    sentry.delayMs = 1_000;
    const res = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(TEST_MASTER_KEY), 'x-request-id': 'sentry-req-at-close' },
      payload: { model: 'demo', messages: [{ role: 'user', content: PROMPT }] },
    });
    assert.equal(res.statusCode, 500);
    await t.app.close(); // graceful shutdown: flushes the span exporter and the Sentry transport
    const last = sentry.events().at(-1) as { tags: Record<string, string> } | undefined;
    assert.equal(last?.tags.request_id, 'sentry-req-at-close', 'reported before close() resolved');
    assert.equal(last?.tags.user_id, undefined, 'the master key has no user');
    // Spans still reach the OTLP collector with Sentry initialised, under the trace id the error carries.
    const traceId = last?.tags.trace_id ?? '';
    assert.match(traceId, /^[0-9a-f]{32}$/);
    assert.ok(sink.traceIds.has(traceId), `OTLP received the failed request's trace ${traceId}`);
  });
});

const root = path.resolve(import.meta.dirname, '../..');

/** Runs a script in a child process (with tsx) and resolves with its exit code and output. */
function runChild(script: string, env: Record<string, string>) {
  return new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Boots the real app in a child process; a module-resolution hook (registered before anything is imported)
 * records every @sentry module the process loads, printed as `SENTRY_MODULES=<count>` once ready.
 */
const HOOK = `let port; export function initialize(d) { port = d.port; }
export async function resolve(s, c, next) { const r = await next(s, c); if (r.url.includes('/@sentry/')) port.postMessage(r.url); return r; }`;
const BOOT = `
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const sentryModules = new Set();
port1.on('message', (url) => sentryModules.add(url));
port1.unref();
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOK)}), { data: { port: port2 }, transferList: [port2] });
const { loadConfig } = await import('./src/config/load-config.ts');
const { buildApp } = await import('./src/app.ts');
const { createLogger } = await import('./src/core/logger.ts');
const { openDatabase } = await import('./src/db/database.ts');
const { migrateUp } = await import('./src/db/migrator.ts');
const config = loadConfig({ ...process.env, DATABASE_URL: 'sqlite::memory:', LOG_LEVEL: 'silent' }, { dotenvDir: null });
const database = openDatabase(config.database);
await migrateUp(database.db);
const app = await buildApp({ config, logger: createLogger({ ...config.log }), database });
await app.ready();
await new Promise((r) => setTimeout(r, 200));
console.log('SENTRY_MODULES=' + sentryModules.size);
`;

const sentryModules = (output: string) => Number(/SENTRY_MODULES=(\d+)/.exec(output)?.[1] ?? Number.NaN);

describe('error tracking: process level and off by default', () => {
  it('reports an unhandled rejection before the process exits with code 1', async () => {
    const sentry = await startFakeSentry();
    try {
      const { code, output } = await runChild(
        `${BOOT}\nsetTimeout(() => Promise.reject(new Error('background job exploded')), 10);\nsetTimeout(() => {}, 20_000);`,
        { SENTRY_DSN: sentry.dsn },
      );
      assert.equal(code, 1, output);
      await eventually(() => sentry.events().length >= 1, 10_000, 'the rejection is reported');
      const event = sentry.events()[0] as {
        level: string;
        tags: Record<string, string>;
        exception: { values: { value: string; mechanism: { type: string } }[] };
      };
      assert.equal(event.exception.values.at(-1)?.value, 'background job exploded');
      assert.equal(event.exception.values.at(-1)?.mechanism.type, 'auto.node.onunhandledrejection');
      assert.equal(event.tags.track, 'stable');
    } finally {
      await sentry.close();
    }
  });

  it('without SENTRY_DSN the SDK is not loaded and nothing is sent', async () => {
    const sentry = await startFakeSentry();
    try {
      const off = await runChild(`${BOOT}\nawait app.close();`, { SENTRY_DSN: '' });
      assert.equal(off.code, 0, off.output);
      assert.equal(sentryModules(off.output), 0, 'no @sentry module was imported');
      // The same boot with a DSN does load it: the probe sees the SDK when it is there.
      const on = await runChild(`${BOOT}\nawait app.close();`, { SENTRY_DSN: sentry.dsn });
      assert.equal(on.code, 0, on.output);
      assert.ok(sentryModules(on.output) > 0, on.output);
      assert.equal(sentry.envelopes.length, 0, 'nothing is sent while nothing fails');
    } finally {
      await sentry.close();
    }
  });
});
