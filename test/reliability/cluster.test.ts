import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bearer, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { type ChatStack, eventually, sseData, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';
import { freePort, startRedisServer } from '../helpers/net.js';

/**
 * Two replicas sharing a real Redis (our own redis-server) and one database: a rate limit holds across both,
 * a key revoked on one is refused by the other; a spawned dist server drains 50 live streams on SIGTERM.
 * The soak lives in soak.test.ts.
 */
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

const hasRedisServer = spawnable('redis-server');
function spawnable(bin: string) {
  return (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, bin)));
}

describe('two replicas sharing Redis', { skip: !hasRedisServer && 'redis-server not installed' }, () => {
  const LIMIT = 30;
  let redis: ChildProcess;
  let redisPort = 0;
  let a: ChatStack;
  let b: TestApp;
  let bUrl: string;
  before(async () => {
    const port = await freePort();
    redisPort = port;
    redis = await startRedisServer(port);
    const env = {
      REDIS_URL: `redis://127.0.0.1:${port}`,
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_PER_MINUTE: String(LIMIT),
      RATE_LIMIT_IP_PER_MINUTE: '100000',
    };
    a = await startChatStack({ env, routing: null });
    b = await startTestApp({
      env: {
        ...env,
        DATABASE_URL: a.t.testDb.url,
        OPENAI_BASE_URL: a.fake.baseUrl,
        OPENAI_API_KEY: UPSTREAM_KEY,
        DEMO_WORD_DELAY_MS: '0',
        RESPONSE_CACHE_TTL_SECONDS: '0',
      },
    });
    await b.app.listen({ port: 0, host: '127.0.0.1' });
    bUrl = `http://127.0.0.1:${(b.app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    b?.app.server.closeAllConnections();
    await b?.close();
    await a?.close();
    redis?.kill('SIGKILL');
  });

  const call = (url: string, key: string) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(key), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    }).then(async (r) => {
      await r.text();
      return r.status;
    });

  it('3× the per-minute limit spread over both replicas: accepted ≤ limit + 2 %', async () => {
    const statuses = await Promise.all(
      Array.from({ length: 3 * LIMIT }, (_, i) => call(i % 2 ? bUrl : a.url, a.apiKey)),
    );
    const accepted = statuses.filter((s) => s === 200).length;
    assert.ok(
      statuses.every((s) => s === 200 || s === 429),
      statuses.join(','),
    );
    assert.ok(accepted <= Math.ceil(LIMIT * 1.02), `accepted ${accepted} > ${LIMIT} + 2 %`);
    assert.ok(accepted >= LIMIT * 0.9, `accepted only ${accepted}`);
  });

  /** Authenticated but not rate-limited: the key check alone. */
  const models = (url: string, key: string) =>
    fetch(`${url}/v1/models`, { headers: bearer(key) }).then(async (r) => {
      await r.text();
      return r.status;
    });

  it('a key revoked on one replica is refused by the other within 5 s', async () => {
    const created = await a.t.inject({
      method: 'POST',
      url: '/api/keys',
      headers: bearer(TEST_MASTER_KEY),
      payload: { name: 'replica', user_id: a.userId },
    });
    const key =
      created.statusCode === 201
        ? (created.json() as { id: string; key: string })
        : await (async () => {
            // The master key may not own keys; create one as the user instead.
            const login = await a.t.inject({
              method: 'POST',
              url: '/api/auth/login',
              payload: { email: 'chat-user@example.com', password: 'a-long-enough-password' },
            });
            const token = (login.json() as { access_token: string }).access_token;
            const res = await a.t.inject({
              method: 'POST',
              url: '/api/keys',
              headers: bearer(token),
              payload: { name: 'replica' },
            });
            return res.json() as { id: string; key: string };
          })();
    assert.equal(await models(bUrl, key.key), 200, 'replica B accepts the key (and may cache it)');
    assert.equal(await models(a.url, key.key), 200, 'replica A accepts it too (and may cache it)');
    const revoked = await b.inject({
      method: 'DELETE',
      url: `/api/keys/${key.id}`,
      headers: bearer(TEST_MASTER_KEY),
    });
    assert.ok(revoked.statusCode < 300, `${revoked.statusCode} ${revoked.body}`);
    await eventually(
      async () => (await models(a.url, key.key)) === 401,
      5_000,
      'replica A refuses the revoked key',
    );
  });
  it('Redis killed: both replicas fail open, readiness degrades, and recover without a restart', async () => {
    const ready = async (url: string) =>
      (await (await fetch(`${url}/health/ready`)).json()) as { failing: string[] };
    const chat = async (url: string) => {
      const started = Date.now();
      const status = await models(url, a.apiKey);
      assert.ok(Date.now() - started < 2_000, 'no request hangs on the dead Redis');
      return status;
    };
    redis.kill('SIGKILL');
    await new Promise((r) => redis.once('exit', r));
    for (const url of [a.url, bUrl]) {
      await eventually(
        async () => (await ready(url)).failing.includes('redis'),
        5_000,
        'readiness reports redis',
      );
      for (let i = 0; i < 3; i++) assert.equal(await chat(url), 200, 'documented fail-open');
    }
    redis = await startRedisServer(redisPort);
    for (const url of [a.url, bUrl])
      await eventually(async () => (await ready(url)).failing.length === 0, 15_000, 'readiness recovers');
    assert.equal(await chat(bUrl), 200);
  });
});

describe('SIGTERM with 50 live streams (dist server)', {
  skip: !existsSync(MAIN) && 'run npm run build',
}, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-rel-sigterm-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every stream finishes or ends in-band, and the process exits 0', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_FORMAT: 'json',
        LOG_LEVEL: 'warn',
        COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
        DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
        RATE_LIMIT_ENABLED: 'false',
        OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
        DEMO_WORD_DELAY_MS: '60',
        SHUTDOWN_TIMEOUT: '2',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (d) => {
      output += d;
    });
    child.stderr!.on('data', (d) => {
      output += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = `http://127.0.0.1:${port}`;
    try {
      await eventually(
        async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true,
        15_000,
        'up',
      );
      const streams = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const res = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
            body: JSON.stringify({
              model: 'demo',
              stream: true,
              messages: [{ role: 'user', content: `s${i}` }],
            }),
          });
          assert.equal(res.status, 200);
          const reader = res.body!.getReader();
          const first = await reader.read();
          const decoder = new TextDecoder();
          let text = decoder.decode(first.value, { stream: true });
          return {
            rest: (async () => {
              while (true) {
                const { done, value } = await reader.read();
                if (done) return text;
                text += decoder.decode(value, { stream: true });
              }
            })(),
          };
        }),
      );
      const signalledAt = Date.now();
      child.kill('SIGTERM');
      const bodies = await Promise.all(streams.map((s) => s.rest));
      let inBand = 0;
      for (const body of bodies) {
        const events = sseData(body);
        assert.equal(events.at(-1), '[DONE]', `a stream was cut: ${body.slice(-300)}`);
        if (events.some((e) => e.includes('"error"'))) inBand++;
      }
      assert.equal(await exited, 0, output.slice(-3000));
      // The client still holds its keep-alive connections: they must not keep the process up for the
      // keep-alive timeout (72 s) after the 2 s drain.
      const exitMs = Date.now() - signalledAt;
      assert.ok(exitMs < 15_000, `exited ${exitMs} ms after SIGTERM`);
      console.log(
        `# sigterm: 50 streams, ${50 - inBand} finished, ${inBand} ended in-band, exit ${exitMs} ms after SIGTERM`,
      );
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
