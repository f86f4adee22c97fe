import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { type ChatStack, eventually, sseData } from '../helpers/chat-stack.js';
import { built, openDemoStream, spawnDistServer } from '../helpers/dist-server.js';
import { startRedisServer } from '../helpers/net.js';
import { type Replicas, redisServerInstalled, startReplicas } from '../helpers/replicas.js';

/**
 * Two replicas sharing a real Redis (our own redis-server) and one database: a rate limit holds across both,
 * a key revoked on one is refused by the other; a spawned dist server drains 50 live streams on SIGTERM.
 * The soak lives in soak.test.ts.
 */

describe('two replicas sharing Redis', {
  skip: !redisServerInstalled && 'redis-server not installed',
}, () => {
  const LIMIT = 30;
  let replicas: Replicas;
  let a: ChatStack;
  let b: TestApp;
  let bUrl: string;
  before(async () => {
    replicas = await startReplicas({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        RATE_LIMIT_PER_MINUTE: String(LIMIT),
        RATE_LIMIT_IP_PER_MINUTE: '100000',
      },
      bEnv: { RESPONSE_CACHE_TTL_SECONDS: '0' },
    });
    ({ a, b, bUrl } = replicas);
  });
  after(() => replicas?.close());

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
  // A request hanging on the dead Redis fails at this bound (how fast is not asserted: a loaded machine).
  it('Redis killed: both replicas fail open, readiness degrades, and recover without a restart', {
    timeout: 60_000,
  }, async () => {
    const ready = async (url: string) =>
      (await (await fetch(`${url}/health/ready`)).json()) as { failing: string[] };
    const chat = async (url: string) => {
      return models(url, a.apiKey);
    };
    replicas.redis.kill('SIGKILL');
    await new Promise((r) => replicas.redis.once('exit', r));
    for (const url of [a.url, bUrl]) {
      await eventually(
        async () => (await ready(url)).failing.includes('redis'),
        5_000,
        'readiness reports redis',
      );
      for (let i = 0; i < 3; i++) assert.equal(await chat(url), 200, 'documented fail-open');
    }
    replicas.redis = await startRedisServer(replicas.redisPort);
    for (const url of [a.url, bUrl])
      await eventually(async () => (await ready(url)).failing.length === 0, 15_000, 'readiness recovers');
    assert.equal(await chat(bUrl), 200);
  });
});

describe('SIGTERM with 50 live streams (dist server)', { skip: !built() && 'run npm run build' }, () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-rel-sigterm-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('every stream finishes or ends in-band, and the process exits 0', async () => {
    const server = await spawnDistServer({
      cwd: dir,
      env: {
        DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
        DEMO_WORD_DELAY_MS: '60',
        SHUTDOWN_TIMEOUT: '2',
      },
    });
    try {
      const streams = await Promise.all(
        Array.from({ length: 50 }, (_, i) => openDemoStream(server.url, `s${i}`)),
      );
      const signalledAt = Date.now();
      server.child.kill('SIGTERM');
      const bodies = await Promise.all(streams.map((s) => s.rest));
      let inBand = 0;
      for (const body of bodies) {
        const events = sseData(body);
        assert.equal(events.at(-1), '[DONE]', `a stream was cut: ${body.slice(-300)}`);
        if (events.some((e) => e.includes('"error"'))) inBand++;
      }
      assert.equal(await server.exited, 0, server.output().slice(-3000));
      // The client still holds its keep-alive connections: they must not keep the process up for the
      // keep-alive timeout (72 s) after the 2 s drain.
      const exitMs = Date.now() - signalledAt;
      assert.ok(exitMs < 72_000, `exited ${exitMs} ms after SIGTERM: not before the keep-alive timeout`);
      console.log(
        `# sigterm: 50 streams, ${50 - inBand} finished, ${inBand} ended in-band, exit ${exitMs} ms after SIGTERM`,
      );
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });
});
