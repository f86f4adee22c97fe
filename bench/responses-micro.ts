/**
 * The Responses route's own work, in process (issue 20's translation cost): the request onto the internal
 * chat request, the answer onto a response object (its ids), and its serialization, per call, for the
 * bench's body. Serialization is timed both ways: fast-json-stringify on the route's former schema (three
 * properties declared, the rest `additionalProperties`) and JSON.stringify.
 * `node --expose-gc --max-semi-space-size=256 --import tsx bench/responses-micro.ts` (this checkout's src;
 * the two flags add bytes allocated per call, counted between collections), or with
 * `RESPONSES_MICRO_ROOT=/path/to/other/dist` (another build's).
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import fastJson from 'fast-json-stringify';

const root = process.env.RESPONSES_MICRO_ROOT ?? path.resolve(import.meta.dirname, '../src');
const load = (file: string) => import(pathToFileURL(path.join(root, file)).href);
const { toInternalRequest } = await load('features/responses/to-internal.js');
const { fromCompletion, newItemId } = await load('features/responses/from-internal.js');

const body = { model: 'gpt-4o-mini', input: 'Say hello to the benchmark.', store: false };
const completion = {
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [
    {
      index: 0,
      message: { role: 'assistant', content: 'Hello, benchmark! '.repeat(6) },
      finish_reason: 'stop',
    },
  ],
  usage: { prompt_tokens: 12, completion_tokens: 20, total_tokens: 32 },
};
const formerSchema = fastJson({
  type: 'object',
  properties: { id: { type: 'string' }, object: { const: 'response' }, status: { type: 'string' } },
  additionalProperties: true,
} as never);

function time(fn: () => unknown, n: number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (fn()) sink++;
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink === 0) throw new Error('nothing made');
  return ns / 1000;
}

const shell = () => ({ id: newItemId('resp'), createdAt: 1, request: body });
const parts: Record<string, () => unknown> = {
  'two item ids': () => newItemId('resp') + newItemId('msg'),
  toInternalRequest: () => toInternalRequest(body, []),
  fromCompletion: () => fromCompletion(completion, shell(), completion.usage),
  'serialize: fast-json-stringify, former schema': () => formerSchema(fromCompletion(completion, shell())),
  'serialize: JSON.stringify': () => JSON.stringify(fromCompletion(completion, shell())),
};
/** Heap bytes a call allocates: a young generation big enough that nothing is collected while counting. */
function bytes(fn: () => unknown): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  const n = 20_000;
  const kept: unknown[] = new Array(n);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < n; i++) kept[i] = fn();
  const after = process.memoryUsage().heapUsed;
  return (after - before) / n;
}

const n = 100_000;
for (const [name, fn] of Object.entries(parts)) {
  const rounds = Array.from({ length: 5 }, () => time(fn, n)).sort((a, b) => a - b);
  const b = bytes(fn);
  const allocated = b === undefined ? '' : `, ${Math.round(b)} B allocated`;
  console.log(`${name}: ${rounds[2]!.toFixed(2)} µs (median of 5)${allocated}`);
}
