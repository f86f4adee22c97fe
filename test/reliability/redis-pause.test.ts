import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { createRedis, waitForRedis } from '../../src/core/redis.js';
import { bearer } from '../helpers/app.js';
import { type ChatStack, eventually } from '../helpers/chat-stack.js';
import { postgresAvailable } from '../helpers/databases.js';
import { type Replicas, redisServerInstalled, startReplicas } from '../helpers/replicas.js';
import { percentile } from './load-client.js';
import {
  assertCleanOutcome,
  assertNoMessageLost,
  type Outcome,
  prepareConversations,
  startTraffic,
  stopAllTraffic,
  tally,
} from './traffic.js';

/**
 * Redis paused (SIGSTOP: the connection stays open, nothing answers) for 10 s under traffic, two replicas
 * with rate limits and the response cache on: replica A fails open (RATE_LIMIT_FAIL_MODE=open, the default),
 * replica B fails closed. Commands time out within a second, so no request hangs; readiness reports redis;
 * after SIGCONT both recover by themselves. The fault matrix's "Redis killed" is in cluster.test.ts.
 */
const PAUSE_MS = 10_000;
const silentLogger = pino({ level: 'silent' });
const DEADLINE_MS = 8_000;
describe('Redis paused under traffic', {
  skip: !redisServerInstalled && 'redis-server not installed',
}, () => {
  let replicas: Replicas;
  let redis: ChildProcess;
  let redisPort: number;
  let a: ChatStack;
  let bUrl: string;
  before(async () => {
    replicas = await startReplicas({
      env: {
        RATE_LIMIT_ENABLED: 'true',
        // Limits far above this traffic: every request is checked against Redis, none is refused for its rate.
        RATE_LIMIT_PER_MINUTE: '100000',
        RATE_LIMIT_PER_HOUR: '1000000',
        RATE_LIMIT_IP_PER_MINUTE: '100000',
        RATE_LIMIT_TOKENS_PER_MINUTE: '100000000',
        RATE_LIMIT_CONCURRENT_STREAMS: '1000',
        RESPONSE_CACHE_TTL_SECONDS: '300',
      },
      a: {
        dialect: postgresAvailable() ? 'postgres' : 'sqlite',
        env: { RATE_LIMIT_FAIL_MODE: 'open' },
        fakeOptions: { chunkIntervalMs: 5 },
      },
      bEnv: { RATE_LIMIT_FAIL_MODE: 'closed' },
    });
    ({ redis, redisPort, a, bUrl } = replicas);
  });
  after(async () => {
    await stopAllTraffic();
    replicas?.redis.kill('SIGCONT');
    await replicas?.close();
  });

  /** A deterministic completion (temperature 0), so the response cache is asked on each one. */
  const cacheable = (url: string, content = `cache me ${Date.now() % 7}`) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(a.apiKey), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', temperature: 0, messages: [{ role: 'user', content }] }),
      signal: AbortSignal.timeout(DEADLINE_MS),
    });
  const readiness = async (url: string) => {
    const started = Date.now();
    const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(DEADLINE_MS) });
    const body = (await res.json()) as { failing: string[] };
    return { status: res.status, failing: body.failing, ms: Date.now() - started };
  };

  it(`${PAUSE_MS / 1000} s SIGSTOP: fail-open A serves, fail-closed B answers 503 + Retry-After, none hangs, both recover`, {
    timeout: 90_000,
  }, async () => {
    const preparedA = await prepareConversations(a, 3);
    const preparedB = await prepareConversations({ ...a, url: bUrl }, 3);
    const trafficA = startTraffic(a, preparedA, { v1Workers: 2, deadlineMs: DEADLINE_MS });
    const trafficB = startTraffic({ ...a, url: bUrl }, preparedB, { v1Workers: 2, deadlineMs: DEADLINE_MS });
    // The cached completions, on both replicas in turn: a hit needs Redis (the shared cache).
    // Bounded (count and deadline) and stopped in the `finally`, whatever the assertions below do.
    let caching = true;
    const cachingUntil = Date.now() + 90_000;
    const cached: { replica: 'a' | 'b'; status: number; ms: number; startedAt: number }[] = [];
    const cacheWorker = (async () => {
      for (let i = 0; caching && i < 5_000 && Date.now() < cachingUntil; i++) {
        const replica = i % 2 ? 'b' : 'a';
        const startedAt = Date.now();
        const status = await cacheable(replica === 'a' ? a.url : bUrl).then(
          async (r) => {
            await r.text();
            return r.status;
          },
          (err: Error) => (err.name === 'TimeoutError' ? 0 : -1),
        );
        cached.push({ replica, status, ms: Date.now() - startedAt, startedAt });
        await sleep(50);
      }
    })();
    try {
      await sleep(2_000);
      const pausedAt = Date.now();
      redis.kill('SIGSTOP');
      const readyDuringPause: {
        a: Awaited<ReturnType<typeof readiness>>;
        b: Awaited<ReturnType<typeof readiness>>;
      }[] = [];
      while (Date.now() - pausedAt < PAUSE_MS) {
        readyDuringPause.push({ a: await readiness(a.url), b: await readiness(bUrl) });
        await sleep(500);
      }
      redis.kill('SIGCONT');
      const resumedAt = Date.now();
      await eventually(
        async () => (await readiness(a.url)).status === 200 && (await readiness(bUrl)).status === 200,
        10_000,
        'both replicas ready again without a restart',
      );
      const recoveredAt = Date.now();
      await sleep(3_000);
      caching = false;
      const [outcomesA, outcomesB] = await Promise.all([trafficA.stop(), trafficB.stop()]);
      await cacheWorker;

      const during = (o: { startedAt: number }) => o.startedAt >= pausedAt && o.startedAt < resumedAt;
      const afterRecovery = (o: { startedAt: number }) => o.startedAt >= recoveredAt;
      const report = (name: string, outcomes: Outcome[]) => {
        const paused = outcomes.filter(during);
        console.log(
          `# redis paused, replica ${name}: ${outcomes.length} requests, statuses ${JSON.stringify(tally(outcomes))}; ` +
            `while paused ${paused.length} requests, statuses ${JSON.stringify(tally(paused))}, latency p50/p99/max ` +
            `${percentile(
              paused.map((o) => o.ms),
              50,
            )}/${percentile(
              paused.map((o) => o.ms),
              99,
            )}/` +
            `${Math.max(0, ...paused.map((o) => o.ms))} ms`,
        );
      };
      report('A (fail open)', outcomesA);
      report('B (fail closed)', outcomesB);
      const cacheTally = (xs: typeof cached) => JSON.stringify(tally(xs as unknown as Outcome[]));
      console.log(
        `# redis paused, cacheable completions: ${cached.length}, statuses ${cacheTally(cached)}, while paused ` +
          `${cacheTally(cached.filter(during))} (max ${Math.max(0, ...cached.filter(during).map((c) => c.ms))} ms); ` +
          `readiness answered in at most ${Math.max(...readyDuringPause.flatMap((r) => [r.a.ms, r.b.ms]))} ms ` +
          `while paused; ready again ${recoveredAt - resumedAt} ms after SIGCONT`,
      );

      for (const o of [...outcomesA, ...outcomesB]) assertCleanOutcome(o, ['service_unavailable']);
      // Fail open: Redis paused or not, replica A answers every request.
      for (const o of outcomesA) assert.ok(o.status < 300, `A (fail open): ${o.status} ${o.body}`);
      for (const c of cached.filter((c) => c.replica === 'a'))
        assert.equal(c.status, 200, 'A serves cacheable ones');
      // Fail closed: B refuses while Redis does not answer, with the documented 503.
      const refusedB = outcomesB.filter((o) => o.status === 503);
      assert.ok(refusedB.length > 0, 'B (fail closed) refused requests while Redis was paused');
      for (const o of refusedB)
        assert.ok(
          o.startedAt > pausedAt - 1_000 && o.startedAt < recoveredAt,
          'B refused only during the pause',
        );
      for (const c of cached.filter((c) => c.replica === 'b'))
        assert.ok([200, 503].includes(c.status), `B: ${c.status}`);
      // Commands time out within a second: nothing waits for Redis anywhere near the deadline.
      const timed = [
        ...outcomesA.map((o) => ({ ...o, replica: 'a' })),
        ...outcomesB.map((o) => ({ ...o, replica: 'b' })),
        ...cached.map((c) => ({ ...c, kind: 'cacheable' })),
      ];
      const slowest = timed.reduce((s, o) => (o.ms > s.ms ? o : s));
      console.log(
        `# redis paused: the slowest, a ${slowest.kind} request on replica ${slowest.replica}, sent ${slowest.startedAt - pausedAt} ms after the pause began, took ${slowest.ms} ms`,
      );
      // None hung: every request was answered before its deadline (a 0 status, checked above), and none
      // waited for Redis to come back: each one sent during the pause (and before its last seconds) was
      // answered while Redis was still paused. How fast, once the watchdog has dropped the stalled connection,
      // is a figure (below), not an assertion: a loaded machine is slow for reasons of its own.
      for (const o of timed.filter((o) => o.startedAt >= pausedAt && o.startedAt < resumedAt - DEADLINE_MS))
        assert.ok(
          o.startedAt + o.ms < resumedAt,
          `a ${o.kind} request on replica ${o.replica}, sent ${o.startedAt - pausedAt} ms into the pause, waited for Redis to come back`,
        );
      const lateInPause = outcomesA
        .filter((o) => during(o) && o.startedAt > pausedAt + 3_000)
        .map((o) => o.ms);
      const late = (p: number) => percentile(lateInPause, p);
      console.log(
        `# redis paused, replica A once the stall was detected: ${lateInPause.length} requests, ` +
          `p50/p90/p99 ${late(50)}/${late(90)}/${late(99)} ms`,
      );
      assert.ok(lateInPause.length > 0);
      // Readiness reported redis on both replicas while Redis was paused (each probe was answered before the
      // pause ended: they are awaited one after another within it).
      assert.ok(readyDuringPause.some((r) => r.a.failing.includes('redis') && r.b.failing.includes('redis')));
      // Recovered by itself: everything after it is served, on both replicas.
      for (const o of [...outcomesA, ...outcomesB].filter(afterRecovery))
        assert.ok(o.status < 300, `after recovery: ${o.status} ${o.body}`);
      for (const c of cached.filter(afterRecovery)) assert.equal(c.status, 200, 'cacheable, after recovery');
      // The shared cache works again: an answer stored through A is a hit on B.
      const key = `after recovery ${Date.now()}`;
      const ask = (url: string) => cacheable(url, key);
      assert.equal((await ask(a.url)).headers.get('x-cache'), 'miss');
      await eventually(async () => (await ask(bUrl)).headers.get('x-cache') === 'hit', 3_000, 'a hit on B');

      const stored = await assertNoMessageLost(
        a.t.database.db,
        [...outcomesA, ...outcomesB],
        [...preparedA.conversations, ...preparedB.conversations],
      );
      console.log(`# redis paused, messages: ${JSON.stringify(stored)}`);
      // Replies: A's all complete; a reply B could not start says why (the documented 503's message).
      const replies = (conversations: string[]) =>
        a.t.database.db
          .selectFrom('messages')
          .select(['status', 'error'])
          .where('role', '=', 'assistant')
          .where('conversation_id', 'in', conversations)
          .execute();
      for (const r of await replies(preparedA.conversations))
        assert.equal(r.status, 'complete', `A: ${r.error}`);
      for (const r of await replies(preparedB.conversations))
        if (r.status !== 'complete') assert.match(r.error ?? '', /rate limits cannot be checked right now/);
    } finally {
      caching = false;
      redis.kill('SIGCONT');
      await Promise.all([trafficA.stop(), trafficB.stop(), cacheWorker]);
    }
  });

  it('a stalled connection is dropped: commands fail at once, then the client is ready again by itself', async () => {
    const client = createRedis(`redis://127.0.0.1:${redisPort}`, silentLogger);
    try {
      assert.ok(await waitForRedis(client));
      redis.kill('SIGSTOP');
      const pausedAt = Date.now();
      // The watchdog's ping times out (1 s) within its next round (1 s): the connection is dropped.
      await eventually(() => client.status !== 'ready', 4_000, 'the stalled connection is dropped');
      const detectedMs = Date.now() - pausedAt;
      const started = Date.now();
      await assert.rejects(client.get('anything'), /enableOfflineQueue|writeable|closed/i);
      const failedMs = Date.now() - started;
      redis.kill('SIGCONT');
      const resumedAt = Date.now();
      assert.ok(await waitForRedis(client, 10_000), 'ready again without a restart');
      assert.equal(await client.ping(), 'PONG');
      console.log(
        `# redis paused, client: stall detected after ${detectedMs} ms, a command then failed in ${failedMs} ms, ` +
          `ready ${Date.now() - resumedAt} ms after SIGCONT`,
      );
      // Not queued for the reconnection (the offline queue is off): the command was refused while Redis was
      // still paused, with the error that says so (above), not after SIGCONT.
    } finally {
      redis.kill('SIGCONT');
      client.disconnect();
    }
  });
});
