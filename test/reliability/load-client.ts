import assert from 'node:assert/strict';
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

export async function streamCompletion(url: string, deadlineMs: number): Promise<StreamOutcome> {
  const startedAt = performance.now();
  const base = { startedAt, headMs: 0, retryAfter: null, code: null, content: '', done: false };
  let headMs = 0;
  try {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      signal: AbortSignal.timeout(deadlineMs),
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
  }
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
