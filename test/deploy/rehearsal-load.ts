import assert from 'node:assert/strict';
import type { RehearsalStack, Replica, TurnResult } from './rehearsal-stack.js';
import { tail } from './rehearsal-stack.js';

/**
 * The rehearsal's client load and its rolling restart, shared by the suites (rehearsal-rollout.test.ts on
 * PostgreSQL, rehearsal-variants.test.ts on MariaDB and with WORKERS=2).
 */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const addressOf = (r: Replica) => `127.0.0.1:${r.port}`;

export interface Outcome {
  id: string;
  start: number;
  end: number;
  failure?: string | undefined;
  /** X-Colloquy-Worker of the answer, when the task reports it (replicas with WORKERS > 1). */
  worker?: string | undefined;
}

/** What a load task reports: a failure (or undefined), optionally with the worker that answered. */
export type TaskResult = string | undefined | { failure?: string | undefined; worker?: string | undefined };

/**
 * Runs `task` in `workers` loops until stop(): every call's id (`label-worker-n`, also its X-Request-Id),
 * timing and failure. A failed call is followed by a short pause, as a client backing off would.
 */
export function steadyLoad(
  label: string,
  workers: number,
  task: (id: string, worker: number, n: number) => Promise<TaskResult>,
) {
  const outcomes: Outcome[] = [];
  let running = true;
  // Bounded even if a caller never reaches stop(): a count per worker and a deadline.
  const deadline = Date.now() + 10 * 60_000;
  const loops = Array.from({ length: workers }, async (_, worker) => {
    for (let n = 0; running && n < 5_000 && Date.now() < deadline; n++) {
      const id = `${label}-${worker}-${n}`;
      const start = Date.now();
      let result: TaskResult;
      try {
        result = await task(id, worker, n);
      } catch (err) {
        result = String(err);
      }
      const { failure, worker: answeredBy } =
        typeof result === 'object' ? result : { failure: result, worker: undefined };
      outcomes.push({ id, start, end: Date.now(), failure, worker: answeredBy });
      if (failure) await sleep(200);
    }
  });
  return {
    outcomes,
    async stop() {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

export const failures = <T extends Outcome>(outcomes: T[]) => outcomes.filter((o) => o.failure);
export const describeFailures = (outcomes: Outcome[]) =>
  failures(outcomes)
    .slice(0, 5)
    .map((o) => `${o.id}: ${o.failure}`)
    .join('\n');

export type AccessLog = Awaited<ReturnType<RehearsalStack['accessLogOf']>>;

/** The outcomes nginx sent first to `replica` that were in flight across [from, to]. */
export const inFlightOn = (outcomes: Outcome[], log: AccessLog, replica: Replica, from: number, to = from) =>
  outcomes.filter(
    (o) => o.start < to && o.end > from && log.get(o.id)?.upstream_addr.split(', ')[0] === addressOf(replica),
  );

/**
 * The rolling restart does what deploy/scripts/deploy does to each replica: take it out of nginx's upstream
 * (deploy/scripts/nginx-route: `down`, `nginx -t`, graceful reload), settle, SIGTERM (it drains its
 * streams), restart, gate on readiness, put it back. Without the take-out this step saw 7 to 18 failed
 * requests of 100 to 280 per run: nginx cannot know a replica drains, and once the listener closed, a
 * request it had just sent on a kept-alive connection was reset or answered 503 — and nginx never replays
 * a POST it already sent (also, event streams answered while draining forced `Connection: keep-alive`;
 * src/plugins/lifecycle.ts now closes them). Taken out first, a replica gets no request to race.
 *
 * deploy/scripts/lib.sh's TAKE_OUT_SETTLE, shortened: enough for nginx's reload to take over, and short
 * enough that streams begun before the take-out are still in flight at SIGTERM, so the drain is proven.
 */
export const TAKE_OUT_SETTLE_MS = 1000;

export interface Replacement {
  replica: Replica;
  /** Taken out of nginx's upstream. */
  out: number;
  /** SIGTERM. */
  at: number;
  /** Ready again (put back just after). */
  back: number;
  code: number | null;
}

export type Witness = Outcome & { turn: TurnResult };

/**
 * Replaces `replicas` one after another as deploy/scripts/deploy does. Before each take-out one more
 * client (a witness, in `witnessConversations[i]`) streams straight from the replica, as nginx's old
 * workers would: whatever nginx happened to route, every replica has a stream to drain at its SIGTERM.
 */
export async function rollingRestart(
  stack: RehearsalStack,
  replicas: Replica[],
  witnessConversations: string[],
): Promise<{ terms: Replacement[]; witnesses: Witness[] }> {
  const terms: Replacement[] = [];
  const witnesses: Witness[] = [];
  const witnessed: Promise<void>[] = [];
  for (const [i, replica] of replicas.entries()) {
    const id = `rolling-witness-${i}`;
    const start = Date.now();
    witnessed.push(
      stack.sendMessage(witnessConversations[i]!, `witness ${i}`, id, replica).then((turn) => {
        witnesses.push({ id, start, end: Date.now(), failure: turn.failure, turn });
      }),
    );
    await stack.route('out', [replica]);
    const out = Date.now();
    await sleep(TAKE_OUT_SETTLE_MS);
    const at = Date.now();
    const code = await stack.stop(replica.proc!, 'SIGTERM');
    await stack.startReplica(replica);
    const back = Date.now();
    await stack.route('in', [replica]);
    terms.push({ replica, out, at, back, code });
  }
  await Promise.all(witnessed);
  return { terms, witnesses };
}

/**
 * What a rolling restart must show whatever the database: every replica exited 0 having drained its
 * witness (still streaming at its SIGTERM, finished), and nginx sent a replica nothing from its take-out
 * (once the reload had taken over: the settle) until it was back — not even as a retry.
 */
export function assertRollingRestart(
  terms: Replacement[],
  witnesses: Witness[],
  outcomes: Outcome[],
  log: AccessLog,
) {
  for (const [i, { replica, at, code }] of terms.entries()) {
    assert.equal(code, 0, `${replica.name} drained and exited 0\n${tail(replica.proc!.log)}`);
    const witness = witnesses.find((w) => w.id === `rolling-witness-${i}`)!;
    assert.ok(witness.end > at, `${witness.id} was still streaming from ${replica.name} at its SIGTERM`);
    assert.equal(witness.failure, undefined, `${witness.id} was drained to its end`);
  }
  for (const { replica, out, back } of terms) {
    const sentWhileOut = outcomes.filter(
      (o) =>
        o.start > out + TAKE_OUT_SETTLE_MS &&
        o.start < back &&
        log.get(o.id)?.upstream_addr.split(', ').includes(addressOf(replica)),
    );
    assert.deepEqual(
      sentWhileOut.map((o) => o.id),
      [],
      `nginx sent requests to ${replica.name} while it was out`,
    );
  }
}
