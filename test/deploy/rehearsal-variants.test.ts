import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import mysql from 'mysql2/promise';
import { eventually } from './helpers.js';
import {
  addressOf,
  assertRollingRestart,
  describeFailures,
  failures,
  inFlightOn,
  type Outcome,
  rollingRestart,
  sleep,
  steadyLoad,
  TAKE_OUT_SETTLE_MS,
} from './rehearsal-load.js';
import {
  mysqlRehearsalSkip,
  RehearsalStack,
  type Replica,
  rehearsalSkip,
  type TurnResult,
  tail,
  UPSTREAM_REPLY,
} from './rehearsal-stack.js';

/**
 * Production rehearsal, variants of the stack (the same nginx, Prometheus, Redis and fake upstream as
 * rehearsal.test.ts): replicas running `WORKERS=2` (a supervisor and two workers on one port, src/cluster/),
 * and replicas on MariaDB. Each runs the one check that matters for it, short: what a worker's death and a
 * supervisor's drain cost clients behind nginx, and a rolling restart whose messages, usage and budget land
 * in MariaDB.
 */

/** A new conversation of the stack's user, through nginx. */
async function conversationOf(stack: RehearsalStack, title: string) {
  const res = await stack.api('POST', '/api/conversations', { title });
  const body = (await res.body.json()) as { id: string };
  assert.equal(res.statusCode, 201, JSON.stringify(body));
  return body.id;
}

/** The worker answering GET /health/ready on a new connection to the replica, or undefined. */
function askWorker(replica: Replica): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port: replica.port,
        path: '/health/ready',
        agent: false,
        headers: { connection: 'close' },
        timeout: 5000,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve(res.statusCode === 200 ? (res.headers['x-colloquy-worker'] as string) : undefined),
        );
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

/**
 * Asks on new connections until each of `pids` has answered: the supervisor hands connections to the
 * workers in turn, so a started worker that never answers is not serving. Bounded by tries and deadline.
 */
async function workersAnswering(replica: Replica, pids: number[], timeoutMs = 30_000) {
  const seen = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  // A worker just forked takes seconds to load and listen on a busy machine: ask at most every 100 ms.
  for (let i = 0; i < 600 && Date.now() < deadline; i++) {
    const worker = await askWorker(replica);
    if (worker) seen.add(worker);
    if (pids.every((p) => seen.has(String(p)))) return;
    await sleep(100);
  }
  assert.fail(
    `workers ${pids.join(', ')} of ${replica.name} answer; seen ${[...seen]}\n${tail(replica.proc!.log)}`,
  );
}

/** When `pid` is gone (reaped by its supervisor): polled, bounded by count and deadline. */
async function gone(pid: number, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 3000 && Date.now() < deadline; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return Date.now();
    }
    await sleep(10);
  }
  assert.fail(`process ${pid} still there after ${timeoutMs} ms`);
}

/**
 * A client's bound on one request of the kill -9 step (its streams take ≈ 1.5 s). Node's cluster primary
 * hands a worker one new connection at a time and closes its own copy only once the worker acknowledges
 * it; a worker killed in between leaves that connection open in the supervisor with nobody reading it
 * (Node 20's RoundRobinHandle does not close it when the worker is removed). nginx then waits for an answer
 * until its proxy_read_timeout (3600 s on the streaming routes). The client gives up after this instead.
 */
const HUNG_MS = 20_000;
const HUNG = `no answer in ${HUNG_MS / 1000} s`;

/** `work`'s result, or `hung` once `ms` pass without one (the request itself ends when the stack closes). */
function within<T, H>(ms: number, work: Promise<T>, hung: H): Promise<T | H> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<H>((resolve) => {
    timer = setTimeout(() => resolve(hung), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

describe('production rehearsal with WORKERS=2: two replicas of two workers each behind the kit’s nginx', {
  skip: rehearsalSkip,
  timeout: 300_000,
}, () => {
  const stack = new RehearsalStack();
  const createConversation = (title: string) => conversationOf(stack, title);

  before(async () => {
    await stack.open({ tracks: ['stable', 'stable'], workers: 2 });
    for (const replica of stack.replicas) {
      const pids = await eventually(
        async () => stack.workerPids(replica).length === 2 && stack.workerPids(replica),
        `two workers under ${replica.name}'s supervisor\n${tail(replica.proc!.log)}`,
      );
      await workersAnswering(replica, pids);
    }
  });

  after(() => stack.close());

  it('kill -9 of one worker under load: the supervisor replaces it; only requests that worker held fail', async () => {
    const replica = stack.replicas[0]!;
    const [victim, survivor] = stack.workerPids(replica) as [number, number];
    // Streams of ≈ 1.5 s: some are in flight on the victim when it dies. Streams, because their headers
    // (X-Colloquy-Worker) arrive before the end: a cut-off stream still names its worker.
    stack.fake.set({ firstTokenDelayMs: 300, chunkIntervalMs: 150 });
    const conversations = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => createConversation(`kill-${i}`)));
    const load = steadyLoad('worker-kill', 10, async (id, worker, n) => {
      if (worker < conversations.length) {
        const turn = await within(HUNG_MS, stack.sendMessage(conversations[worker]!, `message ${n}`, id), {
          failure: HUNG,
        });
        // A reply cut off stays 'streaming' until swept (409 generation_in_progress): carry on elsewhere.
        if (turn.failure) conversations[worker] = await createConversation(`kill-${worker}-${n}`);
        return turn;
      }
      return within(HUNG_MS, stack.streamChat(id), { failure: HUNG });
    });
    let outcomes: Outcome[] = [];
    let killedAt = 0;
    let diedAt = 0;
    let replacement = 0;
    try {
      await sleep(3000);
      killedAt = Date.now();
      process.kill(victim, 'SIGKILL');
      diedAt = await gone(victim);
      replacement = await eventually(
        async () => stack.workerPids(replica).find((p) => p !== victim && p !== survivor),
        `the supervisor forks a new worker\n${tail(replica.proc!.log)}`,
      );
      await workersAnswering(replica, [survivor, replacement]);
      await sleep(2000);
    } finally {
      outcomes = await load.stop();
      stack.fake.set({ firstTokenDelayMs: 0, chunkIntervalMs: 0 });
    }

    // Held by the victim: sent by nginx to this replica, in flight while the worker died, and not answered
    // by another worker (a stream cut before its headers names no worker; it counts as held). Plus, at
    // most one request that never got an answer (HUNG_MS): on the connection handed to the victim but not
    // yet acknowledged when it died. nginx logs it only once it gives up, so it is counted apart.
    const log = await stack.accessLogOf(outcomes.filter((o) => o.failure !== HUNG).map((o) => o.id));
    const held = inFlightOn(outcomes, log, replica, killedAt, diedAt).filter(
      (o) => o.worker === undefined || o.worker === String(victim),
    );
    const hung = outcomes.filter((o) => o.failure === HUNG);
    const failed = failures(outcomes);
    const afterDeath = outcomes.filter((o) => o.start > diedAt);
    console.log(
      `# WORKERS=2, kill -9 of a worker: ${outcomes.length} streams through nginx, ${held.length} held by the ` +
        `victim (${held.filter((o) => o.worker).length} named it), ${failed.length} failed ` +
        `(${hung.length} never answered), ${afterDeath.length} started after its death ` +
        `(${failures(afterDeath).length} failed)`,
    );
    assert.ok(hung.length <= 1, `${hung.length} requests never answered: ${hung.map((o) => o.id)}`);
    for (const o of hung) assert.ok(o.start < diedAt, `${o.id}, never answered, was sent before the death`);
    const unexplained = failed.filter((f) => !held.includes(f) && !hung.includes(f));
    assert.equal(
      unexplained.length,
      0,
      `errors beyond the victim's requests:\n${describeFailures(unexplained)}`,
    );
    assert.ok(
      failed.length > 0 || held.some((o) => o.worker === String(victim)),
      'the kill hit requests the victim was serving',
    );
    assert.equal(failures(afterDeath).length, 0, `after the death:\n${describeFailures(afterDeath)}`);
    assert.ok(afterDeath.length >= 20, `${afterDeath.length} requests served after the kill`);
    assert.ok(
      outcomes.some((o) => o.worker === String(survivor) && o.end > killedAt && !o.failure),
      'the other worker of the replica kept serving',
    );

    // The supervisor said so and counts it; the replica serves with two workers again.
    assert.match(tail(replica.proc!.log, 1000), /worker died; starting another/);
    const metrics = await fetch(`http://127.0.0.1:${replica.port}/metrics`, {
      headers: { authorization: `Bearer ${stack.metricsToken}` },
    });
    const text = await metrics.text();
    assert.equal(metrics.status, 200, text.slice(0, 200));
    assert.match(text, /^colloquy_worker_restarts_total(\{[^}]*\})? 1$/m);
    assert.match(text, /^colloquy_workers(\{[^}]*\})? 2$/m);
  });

  /**
   * The replica is taken out of nginx first, as deploy/scripts/deploy does (rehearsal-load.ts says why):
   * without it, WORKERS=2 or not, a stream begun before SIGTERM leaves its kept-alive connection in nginx's
   * pool, and a request nginx sent on it once the listener had closed was answered 503 (such requests are
   * served now), which nginx does not replay for a POST (3 of 27 requests in a trial run).
   */
  it('SIGTERM to a replica taken out of nginx: both workers drain their streams, the supervisor exits 0, no request fails', async () => {
    const [replica, other] = stack.replicas as [Replica, Replica];
    const pids = stack.workerPids(replica);
    assert.equal(pids.length, 2, `two workers before the stop: ${pids}`);
    // Streams of ≈ 5 s: begun before the take-out or just before SIGTERM, they outlive SHUTDOWN_DELAY (2 s)
    // and end within SHUTDOWN_TIMEOUT (5 s) after it, so the workers have streams to drain.
    stack.fake.set({ firstTokenDelayMs: 100, chunkIntervalMs: 600 });
    const conversations = await Promise.all([0, 1, 2, 3].map((i) => createConversation(`drain-${i}`)));
    const load = steadyLoad('drain', 6, async (id, worker, n) => {
      if (worker < conversations.length) return stack.sendMessage(conversations[worker]!, `message ${n}`, id);
      const streamed = await stack.streamChat(id);
      return {
        ...streamed,
        failure:
          streamed.failure ?? (streamed.text === UPSTREAM_REPLY ? undefined : `text "${streamed.text}"`),
      };
    });
    // Witnesses: streams straight to the replica, each on a new connection, until both workers serve one.
    const witnesses: Promise<TurnResult & { end: number }>[] = [];
    const witnessWorkers = new Set<string>();
    let code: number | null = null;
    let stoppedAt = 0;
    let termAt = 0;
    let out = 0;
    let outcomes: Outcome[] = [];
    try {
      await sleep(2000);
      await stack.route('out', [replica]);
      out = Date.now();
      await sleep(TAKE_OUT_SETTLE_MS);
      for (let i = 0; i < 8 && witnessWorkers.size < 2; i++) {
        const conversation = await createConversation(`drain-witness-${i}`);
        const headers = new Promise<TurnResult>((resolve) => {
          witnesses.push(
            stack
              .sendMessage(conversation, `witness ${i}`, `drain-witness-${i}`, replica, resolve)
              .then((turn) => {
                resolve(turn);
                return { ...turn, end: Date.now() };
              }),
          );
        });
        const worker = (await headers).worker;
        if (worker) witnessWorkers.add(worker);
      }
      termAt = Date.now();
      code = await stack.stop(replica.proc!, 'SIGTERM');
      stoppedAt = Date.now();
      await sleep(2500);
    } finally {
      outcomes = await load.stop();
      stack.fake.set({ firstTokenDelayMs: 0, chunkIntervalMs: 0 });
    }
    const drained = await Promise.all(witnesses);
    const log = await stack.accessLogOf(outcomes.map((o) => o.id));
    const inFlight = inFlightOn(outcomes, log, replica, termAt);
    const afterStop = outcomes.filter((o) => o.start > stoppedAt);
    console.log(
      `# WORKERS=2, SIGTERM: ${outcomes.length} requests through nginx, ${inFlight.length} sent before the ` +
        `take-out and in flight at SIGTERM, ${drained.length} witnesses on workers ${[...witnessWorkers]}, ` +
        `${failures(outcomes).length} failed, exited ${code} after ${stoppedAt - termAt} ms`,
    );
    assert.equal(code, 0, `the supervisor exits 0 once both workers drained\n${tail(replica.proc!.log)}`);
    for (const pid of pids) assert.ok(await gone(pid, 1000), `worker ${pid} exited`);
    for (const pid of pids)
      assert.ok(
        drained.some((t) => t.worker === String(pid) && t.end > termAt),
        `worker ${pid} was streaming a witness at SIGTERM: ${drained.map((t) => `${t.worker} ended ${t.end - termAt} ms after`)}`,
      );
    for (const turn of drained) {
      assert.equal(turn.failure, undefined, `${turn.requestId} was drained to its end`);
      assert.equal(turn.text, UPSTREAM_REPLY, `${turn.requestId}: the whole reply`);
    }
    assert.equal(failures(outcomes).length, 0, `failed:\n${describeFailures(outcomes)}`);
    assert.ok(afterStop.length >= 5, `${afterStop.length} requests after the stop`);
    // Once the reload had taken over, nginx sent everything to the other replica, not even retrying here.
    const afterOut = outcomes.filter((o) => o.start > out + TAKE_OUT_SETTLE_MS);
    for (const o of afterOut)
      assert.equal(log.get(o.id)?.upstream_addr, addressOf(other), `${o.id} went to ${other.name}`);
  });
});

describe('production rehearsal on MariaDB: two replicas behind the kit’s nginx, DATABASE_URL=mysql://…', {
  skip: mysqlRehearsalSkip,
  timeout: 300_000,
}, () => {
  const stack = new RehearsalStack();
  let db: mysql.Connection;
  const createConversation = (title: string) => conversationOf(stack, title);

  before(async () => {
    await stack.open({ tracks: ['stable', 'stable'], dialect: 'mysql' });
    db = await mysql.createConnection(stack.db.url);
  });

  after(async () => {
    await db?.end();
    await stack.close();
  });

  it('rolling restart under streaming load: no request fails; messages, usage and the key’s budget are in MariaDB', async () => {
    const [[key]] = await db.query<mysql.RowDataPacket[]>("select id from api_keys where name = 'rehearsal'");
    const keyId = String(key!.id);
    const set = await stack.api(
      'PUT',
      `/api/budgets/key/${keyId}`,
      { period: 'day', limit_tokens: 1_000_000 },
      { authorization: `Bearer ${stack.adminKey}` },
    );
    assert.equal(set.statusCode, 204, await set.body.text());
    const [budgets] = await db.query<mysql.RowDataPacket[]>(
      'select period, limit_tokens from budgets where scope = ? and subject_id = ?',
      ['key', keyId],
    );
    assert.deepEqual(
      budgets.map((b) => ({ ...b })),
      [{ period: 'day', limit_tokens: 1_000_000 }],
    );

    // As the rollout rehearsal's restart (rehearsal-load.ts), with the user's key so the budget counts.
    stack.fake.set({ firstTokenDelayMs: 100, chunkIntervalMs: 450 });
    const conversations = await Promise.all([0, 1, 2, 3].map((i) => createConversation(`mariadb-${i}`)));
    const witnessConversations = await Promise.all(
      stack.replicas.map((_, i) => createConversation(`witness-${i}`)),
    );
    const turns: TurnResult[] = [];
    const load = steadyLoad('mariadb', 8, async (id, worker, n) => {
      if (worker < conversations.length) {
        const turn = await stack.sendMessage(conversations[worker]!, `message ${worker}.${n}`, id);
        turns.push(turn);
        return turn.failure;
      }
      const streamed = await stack.streamChat(id, {}, { authorization: `Bearer ${stack.apiKey}` });
      return streamed.failure ?? (streamed.text === UPSTREAM_REPLY ? undefined : `text "${streamed.text}"`);
    });
    let restart: Awaited<ReturnType<typeof rollingRestart>>;
    let outcomes: Outcome[] = [];
    try {
      await sleep(2000);
      restart = await rollingRestart(stack, stack.replicas, witnessConversations);
      await sleep(1500);
    } finally {
      outcomes = await load.stop();
      stack.fake.set({ firstTokenDelayMs: 0, chunkIntervalMs: 0 });
    }
    const log = await stack.accessLogOf(outcomes.map((o) => o.id));
    outcomes.push(...restart.witnesses);
    turns.push(...restart.witnesses.map((w) => w.turn));
    console.log(
      `# MariaDB rolling restart: ${outcomes.length} streams (${turns.length} conversation turns), ` +
        `failed: ${failures(outcomes).length}`,
    );
    assertRollingRestart(restart.terms, restart.witnesses, outcomes, log);
    assert.equal(failures(outcomes).length, 0, `failed:\n${describeFailures(outcomes)}`);
    assert.ok(outcomes.length >= 20, `${outcomes.length} streams`);

    // Every acknowledged turn is in MariaDB: the user's message, and its reply complete with the whole text.
    const acknowledged = turns.filter((t) => t.status === 200 && t.userMessageId);
    const replyIds = acknowledged.map((t) => t.assistantMessageId!);
    const [users] = await db.query<mysql.RowDataPacket[]>(
      "select id from messages where role = 'user' and id in (?)",
      [acknowledged.map((t) => t.userMessageId!)],
    );
    assert.equal(users.length, acknowledged.length, 'every acknowledged user message is in MariaDB');
    const [replies] = await db.query<mysql.RowDataPacket[]>(
      'select id, status, content from messages where id in (?)',
      [replyIds],
    );
    const incomplete = replies.filter((r) => r.status !== 'complete' || r.content !== UPSTREAM_REPLY);
    assert.equal(replies.length, replyIds.length);
    assert.deepEqual(incomplete, [], 'every reply is complete with the whole text');

    // Usage: one ledger row per /v1 stream (its request id) and per reply (its generation), written even by
    // a replica that was draining; the budget's spend is that ledger's.
    // A row is written after its stream's last byte, batched (~50 ms): the last streams' rows may still be on
    // their way as the load stops, so the count is read until it is whole, for a few seconds at most.
    const settledRows = async (sql: string, params: unknown[], expected: number) => {
      let rows: mysql.RowDataPacket[] = [];
      const deadline = Date.now() + 5_000;
      do {
        [rows] = await db.query<mysql.RowDataPacket[]>(sql, params);
        if (rows.length >= expected) break;
        await sleep(250);
      } while (Date.now() < deadline);
      return rows;
    };
    const streams = outcomes.filter((o) => !turns.some((t) => t.requestId === o.id)).map((o) => o.id);
    const streamUsage = await settledRows(
      'select request_id from usage_records where api_key_id = ? and request_id in (?)',
      [keyId, streams],
      streams.length,
    );
    const missing = outcomes.filter(
      (o) => streams.includes(o.id) && !streamUsage.some((u) => u.request_id === o.id),
    );
    // What the replicas logged about the streams without a row, and any ledger write that failed.
    const logged = () =>
      stack.replicas.flatMap((r) =>
        readFileSync(r.proc!.log, 'utf8')
          .split('\n')
          .filter((l) => /record usage|stopped|drain/.test(l) || missing.some((m) => l.includes(m.id)))
          .slice(-30)
          .map((l) => `${r.name}: ${l.slice(0, 400)}`),
      );
    assert.equal(
      streamUsage.length,
      streams.length,
      `a usage row for every /v1 stream; without one: ${JSON.stringify(missing)}, restarts: ${JSON.stringify(
        restart!.terms.map((t) => ({
          replica: t.replica.name,
          port: t.replica.port,
          out: t.out,
          at: t.at,
          back: t.back,
        })),
      )}\n${missing.length ? logged().join('\n') : ''}`,
    );
    const replyUsage = await settledRows(
      'select u.request_id from usage_records u join generations g on g.id = u.request_id where g.message_id in (?)',
      [replyIds],
      replyIds.length,
    );
    assert.equal(replyUsage.length, replyIds.length, 'a usage row for every reply');
    const [[ledger]] = await db.query<mysql.RowDataPacket[]>(
      'select sum(prompt_tokens + completion_tokens) as tokens from usage_records where api_key_id = ?',
      [keyId],
    );
    const status = await stack.api('GET', `/api/budgets/key/${keyId}`);
    const body = (await status.body.json()) as { data: { spent_tokens: number; reserved_tokens: number }[] };
    assert.equal(status.statusCode, 200, JSON.stringify(body));
    assert.ok(Number(ledger!.tokens) > 0, 'tokens were recorded');
    assert.deepEqual(
      body.data.map((b) => [b.spent_tokens, b.reserved_tokens]),
      [[Number(ledger!.tokens), 0]],
      'the budget has spent what MariaDB’s ledger holds, nothing left reserved',
    );
  });
});
