/**
 * Request pass-through, in process: the client's bytes with the model rewritten (raw-request.ts) against the
 * parsed body serialized again, per call, for the bench's body and a longer conversation.
 * `node --import tsx bench/request-bytes-micro.ts`
 */
import { completionRequestText, withoutStreaming } from '../src/providers/openai/provider.js';
import { carryRawRequest, keepRawRequest } from '../src/providers/raw-request.js';
import type { ChatCompletionRequest } from '../src/providers/types.js';

const turn = (i: number) => ({
  role: i % 2 ? 'assistant' : 'user',
  content: `Turn ${i}: ${'a few words of an ordinary conversation, '.repeat(12)}`,
});
const bodies: Record<string, unknown> = {
  'bench body (91 B)': {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
  },
  'conversation (20 turns, ~10 KB)': {
    model: 'gpt-4o-mini',
    messages: Array.from({ length: 20 }, (_, i) => turn(i)),
    temperature: 0.2,
  },
};

function time(fn: () => string, n: number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += fn().length;
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink === 0) throw new Error('nothing made');
  return ns / 1000;
}

for (const [name, value] of Object.entries(bodies)) {
  const text = JSON.stringify(value);
  const body = JSON.parse(text) as ChatCompletionRequest;
  keepRawRequest(body, text);
  const copy = () => ({ ...body, model: 'gpt-4o-2024' }) as ChatCompletionRequest;
  const n = text.length > 1000 ? 20_000 : 200_000;
  const rounds: [number, number][] = [];
  for (let r = 0; r < 5; r++) {
    const serialize = time(() => JSON.stringify(withoutStreaming(copy())), n);
    const passThrough = time(() => {
      const attempt = copy();
      carryRawRequest(body, attempt);
      return completionRequestText(attempt, attempt);
    }, n);
    rounds.push([serialize, passThrough]);
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const s = median(rounds.map((r) => r[0]));
  const p = median(rounds.map((r) => r[1]));
  console.log(`${name}: serialize ${s.toFixed(2)} µs, pass-through ${p.toFixed(2)} µs (median of 5)`);
}
