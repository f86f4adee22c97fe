import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ChatStack, eventually, startChatStack } from '../helpers/chat-stack.js';
import { type PostgresServer, postgresBinDir, startPostgresServer } from '../helpers/postgres.js';
import {
  assertCleanOutcome,
  assertNoMessageLost,
  prepareConversations,
  startTraffic,
  stopAllTraffic,
  tally,
} from './traffic.js';

/**
 * PostgreSQL restarted (fast) and paused for 20 s under a steady mix of conversation turns and /v1 calls,
 * on a throw-away cluster (the shared server on :5432 is never touched). Requests answer 2xx or 503 with
 * Retry-After before their deadline, readiness turns not-ready then ready, the pool reconnects by itself,
 * and every acknowledged message is stored.
 */
const POOL_TIMEOUT_MS = 2_000;
const QUERY_TIMEOUT_MS = 2_000;
// A refusal comes within the waits configured: a pooled connection, then a query abandoned at its timeout
// (the client-side limit is the server's statement_timeout + 1 s), plus a busy machine's margin.
const FAIL_FAST_MS = POOL_TIMEOUT_MS + QUERY_TIMEOUT_MS + 1_000 + 1_500;
// Any answer at all: a turn that started just before the fault may wait once for its reply's save and
// (bounded, 1 s) for its usage row after being sent on; past this a request counts as hung.
const DEADLINE_MS = 2 * FAIL_FAST_MS;
const CODES = ['database_unavailable'];

interface ReadinessSample {
  at: number;
  status: number;
}

/** Polls /health/ready back to back until stopped (at most 10,000 probes or two minutes). */
function watchReadiness(url: string) {
  const samples: ReadinessSample[] = [];
  let running = true;
  const until = Date.now() + 120_000;
  const loop = (async () => {
    for (let i = 0; running && i < 10_000 && Date.now() < until; i++) {
      const res = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(DEADLINE_MS) }).catch(
        () => undefined,
      );
      await res?.text();
      samples.push({ at: Date.now(), status: res?.status ?? 0 });
      await sleep(10);
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
      return samples;
    },
  };
}

// In CI the machine has PostgreSQL's server binaries (it runs the shared server): missing ones fail there.
const CI = process.env.CI === 'true' || process.env.CI === '1';
describe('reliability: PostgreSQL outages', {
  skip: !CI && !postgresBinDir() && 'PostgreSQL server binaries not installed',
}, () => {
  let cluster: PostgresServer;
  let s: ChatStack;
  // The server runs in this process: an error it fails to handle (say, a pg client's 'error' event when the
  // restart ends its session) would crash a real server; here it is caught and fails the scenario.
  const crashes: unknown[] = [];
  const onCrash = (err: unknown) => crashes.push(err);
  before(async () => {
    process.on('uncaughtException', onCrash);
    cluster = await startPostgresServer();
    s = await startChatStack({
      routing: null,
      env: {
        DATABASE_URL: cluster.url,
        DB_POOL_TIMEOUT: String(POOL_TIMEOUT_MS),
        DB_QUERY_TIMEOUT: String(QUERY_TIMEOUT_MS),
      },
    });
  });
  after(async () => {
    process.off('uncaughtException', onCrash);
    await stopAllTraffic();
    await s?.close();
    await cluster?.stop();
  });

  const ready = async () => (await fetch(`${s.url}/health/ready`)).status === 200;

  /** Traffic before, during and after `fault`; checks every answer and the stored messages. */
  async function underTraffic(
    name: string,
    fault: (readiness: ReturnType<typeof watchReadiness>) => Promise<void>,
  ) {
    const prepared = await prepareConversations(s, 3);
    const traffic = startTraffic(s, prepared, { v1Workers: 2, deadlineMs: DEADLINE_MS });
    const readiness = watchReadiness(s.url);
    try {
      await sleep(1_000);
      const faultAt = Date.now();
      await fault(readiness);
      const removedAt = Date.now();
      await eventually(ready, 10_000, `${name}: ready again`);
      const readyAt = Date.now();
      // Steady state again within seconds (replies finished during the fault are saved within a second of
      // recovery): everything sent from then on must succeed.
      await sleep(2_500);
      const cleanFrom = Date.now();
      await sleep(1_500);
      const outcomes = await traffic.stop();
      const samples = await readiness.stop();

      assert.deepEqual(crashes, [], `${name}: uncaught errors`);
      for (const o of outcomes) assertCleanOutcome(o, CODES);
      const late = outcomes.filter((o) => o.startedAt >= cleanFrom);
      assert.ok(late.length > 0, 'traffic kept flowing after recovery');
      for (const o of late) assert.ok(o.status < 300, `${name}: after recovery ${o.status} ${o.body}`);
      assert.ok(
        samples.some((r) => r.at >= faultAt && r.status === 503),
        `${name}: readiness never reported not ready: ${JSON.stringify(samples.slice(0, 20))}`,
      );
      assert.equal(samples.at(-1)?.status, 200);
      const stats = s.t.database.poolStats();
      assert.ok(stats && stats.total > 0, 'the pool reconnected');
      const stored = await assertNoMessageLost(s.t.database.db, outcomes, traffic.conversations);
      const slowest = Math.max(...outcomes.map((o) => o.ms));
      console.log(
        `# ${name}: ${outcomes.length} requests ${JSON.stringify(tally(outcomes))}, slowest ${slowest} ms, ` +
          `fault ${removedAt - faultAt} ms, ready again ${readyAt - removedAt} ms after, ` +
          `${samples.filter((r) => r.status === 503).length}/${samples.length} readiness probes not ready, ` +
          `${stored.turns} turns (${stored.acknowledged} acknowledged), ${stored.stored} messages checked (replies ${JSON.stringify(stored.replies)})`,
      );
      return outcomes;
    } finally {
      // Whether the scenario passed or not: no worker or probe keeps running (both stops are idempotent).
      await Promise.all([traffic.stop(), readiness.stop()]);
    }
  }

  it('pg_ctl restart -m fast: 2xx or 503 + Retry-After, never 500, pool reconnects by itself', async () => {
    // Stopped, then started once readiness has said so: a restart takes about a second, and whether a probe
    // falls within it was a matter of timing (on a loaded machine, often none did).
    await underTraffic('postgres fast restart', (readiness) => {
      const from = readiness.samples.length;
      return cluster.restartFast(() =>
        eventually(
          () => readiness.samples.slice(from).some((r) => r.status === 503),
          10_000,
          'readiness reported the database down while it was',
        ),
      );
    });
  });

  it('20 s pause (SIGSTOP of every server process): requests fail fast with 503, recover on SIGCONT', {
    timeout: 60_000,
  }, async () => {
    let pausedAt = 0;
    let resumedAt = 0;
    const outcomes = await underTraffic('postgres 20 s pause', async () => {
      cluster.pause();
      pausedAt = Date.now();
      await sleep(20_000);
      resumedAt = Date.now();
      cluster.resume();
    });
    const refused = outcomes.filter((o) => o.status === 503);
    assert.ok(refused.length > 0, 'requests during the pause were refused');
    // The timeouts bound the wait: a request sent in the first half of the pause was answered (503) while
    // PostgreSQL was still paused, not once it came back. Events, not a bound in milliseconds.
    const early = outcomes.filter((o) => o.startedAt >= pausedAt && o.startedAt < pausedAt + 10_000);
    assert.ok(early.length > 0, 'requests were sent during the pause');
    for (const o of early)
      assert.ok(
        o.startedAt + o.ms < resumedAt,
        `${o.status} after ${o.ms} ms, sent ${o.startedAt - pausedAt} ms into the pause: it waited for PostgreSQL`,
      );
  });

  it('connections gone silent (their backends stopped, as behind a dropping firewall) are replaced', {
    timeout: 60_000,
  }, async () => {
    const prepared = await prepareConversations(s, 3);
    const traffic = startTraffic(s, prepared, { v1Workers: 2, deadlineMs: DEADLINE_MS });
    await sleep(1_000);
    const silenced = cluster.connectionPids();
    const silencedAt = Date.now();
    for (const pid of silenced) process.kill(pid, 'SIGSTOP');
    // Each silent connection costs one query timeout before it is dropped; then fresh connections serve,
    // while the silent ones are still stopped.
    const replacedBy = silencedAt + FAIL_FAST_MS;
    await sleep(replacedBy - Date.now() + 3_000);
    const resumedAt = Date.now();
    for (const pid of silenced) process.kill(pid, 'SIGCONT');
    const outcomes = await traffic.stop();

    assert.deepEqual(crashes, [], 'uncaught errors');
    for (const o of outcomes) assertCleanOutcome(o, CODES);
    // Answered while the old connections were still silent: only fresh connections can have served them.
    const later = outcomes.filter((o) => o.startedAt >= replacedBy && o.startedAt + o.ms < resumedAt);
    assert.ok(later.length >= 20, `traffic flowed again on fresh connections: ${later.length} requests`);
    for (const o of later) assert.ok(o.status < 300, `not replaced: ${o.status} ${o.body}`);
    const stored = await assertNoMessageLost(s.t.database.db, outcomes, traffic.conversations);
    console.log(
      `# postgres silent connections: ${silenced.length} backends stopped, ${outcomes.length} requests ` +
        `${JSON.stringify(tally(outcomes))}, all ${later.length} sent from ${FAIL_FAST_MS} ms on succeeded while they were stopped, ` +
        `${stored.turns} turns (${stored.acknowledged} acknowledged), ${stored.stored} messages checked (replies ${JSON.stringify(stored.replies)})`,
    );
  });
});
