import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { sseData } from '../helpers/chat-stack.js';

/** One streamed /v1 completion as a load client sees it; never throws. */
export interface StreamOutcome {
  /** 0: no answer before the deadline (a hang); -1: the connection failed. */
  status: number;
  startedAt: number;
  /** Until the response head. */
  headMs: number;
  /** Until the last byte. */
  ms: number;
  retryAfter: string | null;
  code: string | null;
  /** The streamed text, deltas joined in arrival order. */
  content: string;
  /** The stream ended with data: [DONE]. */
  done: boolean;
  error?: string;
}

/** `stop` ends the request early (its outcome is then a connection failure, -1): see `startWorkers`. */
export async function streamCompletion(
  url: string,
  deadlineMs: number,
  stop?: AbortSignal,
): Promise<StreamOutcome> {
  const startedAt = performance.now();
  const base = { startedAt, headMs: 0, retryAfter: null, code: null, content: '', done: false };
  let headMs = 0;
  // The deadline, or `stop`: a listener removed once the request is done (AbortSignal.any would keep one
  // per request on the long-lived `stop` signal).
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException('no answer before the deadline', 'TimeoutError')),
    deadlineMs,
  );
  const onStop = () => controller.abort(stop?.reason);
  stop?.addEventListener('abort', onStop, { once: true });
  if (stop?.aborted) onStop();
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      signal: controller.signal,
    });
    headMs = performance.now() - startedAt;
    const body = await res.text();
    const ms = performance.now() - startedAt;
    const retryAfter = res.headers.get('retry-after');
    if (res.status !== 200) {
      let code: string | null = null;
      try {
        code = (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? null;
      } catch {}
      return { ...base, status: res.status, headMs, ms, retryAfter, code, error: body };
    }
    const data = sseData(body);
    const content = data
      .filter((d) => d !== '[DONE]')
      .map(
        (d) =>
          (JSON.parse(d) as { choices?: { delta?: { content?: string } }[] }).choices?.[0]?.delta?.content ??
          '',
      )
      .join('');
    return { ...base, status: 200, headMs, ms, retryAfter, content, done: data.at(-1) === '[DONE]' };
  } catch (err) {
    const ms = performance.now() - startedAt;
    const status = (err as Error).name === 'TimeoutError' ? 0 : -1;
    return { ...base, status, headMs, ms, error: String((err as Error).cause ?? err) };
  } finally {
    clearTimeout(timer);
    stop?.removeEventListener('abort', onStop);
  }
}

export interface Workers {
  /** Every outcome so far, in completion order (never more than `maxOutcomes`). */
  outcomes: StreamOutcome[];
  /** Settles once every worker has stopped; never rejects. */
  done: Promise<void>;
  /** Stops every worker (in-flight requests are aborted); idempotent. Call it in a `finally`. */
  stop(): Promise<void>;
}

/**
 * `count` load clients, each streaming one completion after another while `running(index)` holds. Every loop
 * is bounded three ways, so that a failing assertion (or a server that went away) can never leave them
 * spinning: a round count per client, a cap on the outcomes kept, and a deadline, plus `stop()` (or the
 * caller's `signal`) for the test's `finally`. A refused or failed request pauses before the next one (a
 * fraction of Retry-After, with jitter: impatient clients are the worst case for the server, more refusals
 * to answer; and no busy loop on instant connection errors).
 */
export function startWorkers(options: {
  url: string;
  count: number;
  running: (index: number) => boolean;
  /** Per request (a request still unanswered then counts as a hang, status 0). */
  requestDeadlineMs: number;
  /** For the whole set of workers, from now. */
  deadlineMs: number;
  maxRoundsPerWorker?: number;
  maxOutcomes?: number;
  signal?: AbortSignal;
  /** Where the outcomes go (e.g. one array shared by several sets of workers); a new one by default. */
  outcomes?: StreamOutcome[];
}): Workers {
  const {
    url,
    count,
    running,
    requestDeadlineMs,
    maxRoundsPerWorker = 1_000,
    maxOutcomes = 20_000,
  } = options;
  const controller = new AbortController();
  // One listener per client while its request runs (and the caller's, below): not a leak.
  setMaxListeners(count + 10, controller.signal);
  const deadline = setTimeout(
    () => controller.abort(new Error('load workers: deadline reached')),
    options.deadlineMs,
  );
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  const stopSignal = controller.signal;
  const outcomes = options.outcomes ?? [];
  const one = async (index: number) => {
    for (let round = 0; round < maxRoundsPerWorker && running(index); round++) {
      if (stopSignal.aborted || outcomes.length >= maxOutcomes) return;
      const o = await streamCompletion(url, requestDeadlineMs, stopSignal);
      if (stopSignal.aborted) return; // cut by stop(): not an answer of the server's
      outcomes.push(o);
      if (o.status !== 200)
        await sleep(200 + Math.random() * 300, undefined, { signal: stopSignal }).catch(() => {});
    }
  };
  const done = Promise.allSettled(Array.from({ length: count }, (_, index) => one(index))).then(() => {
    clearTimeout(deadline);
    options.signal?.removeEventListener('abort', onAbort);
  });
  return {
    outcomes,
    done,
    stop: async () => {
      controller.abort(new Error('load workers: stopped'));
      await done;
    },
  };
}

/**
 * Every answer is either the whole reply, in order, ending with [DONE], or an immediate refusal:
 * 503 service_unavailable with Retry-After. No hang, no connection error, no other status.
 */
export function assertStreamOrRefusal(o: StreamOutcome, reply: string) {
  const what = `a stream sent at +${Math.round(o.startedAt)} ms, answered after ${Math.round(o.ms)} ms`;
  assert.notEqual(o.status, 0, `${what}: no answer before the deadline`);
  assert.notEqual(o.status, -1, `${what}: the connection failed: ${o.error}`);
  if (o.status === 503) {
    assert.equal(o.code, 'service_unavailable', `${what}: ${o.error}`);
    assert.equal(o.retryAfter, '1', `${what}: 503 without Retry-After: 1`);
    return;
  }
  assert.equal(o.status, 200, `${what}: ${o.status} ${o.error}`);
  assert.equal(o.content, reply, `${what}: chunks missing or out of order`);
  assert.ok(o.done, `${what}: no [DONE]`);
}

export const percentile = (values: number[], p: number) => {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/** One line of figures: requests, outcomes by status, latency percentiles of the streams and the 503s. */
export function figures(name: string, outcomes: StreamOutcome[]) {
  const statuses: Record<string, number> = {};
  for (const o of outcomes) statuses[o.status] = (statuses[o.status] ?? 0) + 1;
  const ms = (status: number, p: number) =>
    Math.round(
      percentile(
        outcomes.filter((o) => o.status === status).map((o) => o.ms),
        p,
      ),
    );
  const line =
    `# ${name}: ${outcomes.length} requests, statuses ${JSON.stringify(statuses)}, ` +
    `200 stream p50/p99 ${ms(200, 50)}/${ms(200, 99)} ms` +
    (statuses[503] ? `, 503 p50/p99 ${ms(503, 50)}/${ms(503, 99)} ms` : '');
  console.log(line);
  return { statuses, p99Refused: ms(503, 99), p50Served: ms(200, 50) };
}
