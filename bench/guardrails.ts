/**
 * The added cost of issue 22's smallest configuration (pii redact on input, a regex block on output) on a
 * typical message: input checks over a ~400-character prompt, output checks over a 600-character answer
 * streamed in 5-character chunks through the hold-back. Run: npx tsx bench/guardrails.ts
 */
import { buildGuardrails, type GuardrailConfig } from '../src/features/guardrails/config.js';
import { guardInput } from '../src/features/guardrails/input.js';
import { guardStream } from '../src/features/guardrails/output-stream.js';
import { applyStage } from '../src/features/guardrails/pipeline.js';
import type { ChatCompletionRequest, StreamEvent } from '../src/providers/types.js';

const set = buildGuardrails([
  { name: 'pii', check: 'pii', stage: 'input', action: 'redact' },
  { name: 'house-rules', check: 'regex', deny: ['(?i)forbidden phrase'], stage: 'output', action: 'block' },
]).value!;
const prompt =
  'Hi! I am planning a trip to Lisbon next month with my family. Could you suggest a three-day itinerary ' +
  'with museums, a good seafood restaurant and a day trip to Sintra? My budget is about 1200 euros, we ' +
  'have two kids aged 7 and 10, and we prefer public transport. You can reach me at parent@example.com.';
const body: ChatCompletionRequest = {
  model: 'm',
  messages: [
    { role: 'system', content: 'You are a helpful travel assistant.' },
    { role: 'user', content: prompt },
  ],
};
const answer =
  'Day one: start at the Belém Tower and the Jerónimos Monastery, then try pastéis de nata nearby. ' +
  'In the afternoon, visit the MAAT museum. Day two: take the train from Rossio to Sintra. ' +
  'See the Pena Palace and the Moorish Castle; book tickets online to skip the queue. ' +
  'Day three: explore Alfama on foot, ride tram 28, and have dinner at a seafood place in Cais do Sodré. ' +
  'Public transport passes for kids are cheap. Enjoy your trip, and tell me if you want restaurant names!';
const events = (): StreamEvent[] =>
  (answer.match(/.{1,5}/gs) ?? []).map((content) => ({
    chunk: {
      id: 'c',
      object: 'chat.completion.chunk',
      created: 0,
      model: 'm',
      choices: [{ index: 0, delta: { content }, finish_reason: null }],
    },
  }));
async function* iterate(list: StreamEvent[]) {
  for (const e of list) yield e;
}
const sink = () => {};

async function measure(name: string, fn: () => Promise<unknown>, n = 3000) {
  for (let i = 0; i < 300; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await fn();
    times.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  times.sort((a, b) => a - b);
  const p = (q: number) => times[Math.floor(q * (times.length - 1))]!.toFixed(1);
  console.log(`${name}: p50 ${p(0.5)} µs, p99 ${p(0.99)} µs`);
}

await measure('input (pii redact, 2 messages)', () => guardInput(set.input, body, sink));
await measure('output, whole answer (regex block)', () => applyStage(set.output, answer, sink));
await measure('output, streamed 5-char chunks (hold-back + regex)', async () => {
  for await (const _ of guardStream(iterate(events()), set, sink));
});
await measure('baseline: the same stream without guardrails', async () => {
  for await (const _ of iterate(events()));
});

// --- Per request, through the gateway decorator (issue 22's "guardrail cost per request") -------------------
// An in-memory upstream answers at once, so what is measured is only what GuardedGateway adds: resolving the
// request's set, the input stage, the output stage (whole answer, or the stream's hold-back) and unmasking.
const { GuardedGateway } = await import('../src/features/guardrails/guarded-gateway.js');
const { GuardrailResolution } = await import('../src/features/guardrails/resolver.js');
const { PRESETS } = await import('../src/features/guardrails/presets.js');
type Inner = ConstructorParameters<typeof GuardedGateway>[0];
const route = {
  requestedModel: 'm',
  provider: 'p',
  deployment: 'p/m',
  upstreamModel: 'm',
  attempts: 1,
  fallback: false,
};
const inner = {
  hasModel: () => true,
  listModels: async () => [],
  complete: async () => ({
    completion: {
      id: 'c',
      object: 'chat.completion' as const,
      created: 0,
      model: 'm',
      choices: [
        {
          index: 0,
          message: { role: 'assistant' as const, content: answer },
          finish_reason: 'stop' as const,
        },
      ],
    },
    route,
    latencyMs: 0,
  }),
  stream: async () => ({ route, ttftMs: 0, events: iterate(events()) }),
} as unknown as Inner;
const caller = { principal: { userId: 'u', apiKeyId: 'k', role: 'user' as const, via: 'api_key' as const } };
const request = { body, requestId: 'r', caller };
for (const [name, base] of [
  ['none', []],
  [
    "issue 22's smallest (pii redact, regex block)",
    [
      { name: 'pii', check: 'pii' as const, stage: 'input' as const, action: 'redact' as const },
      {
        name: 'house-rules',
        check: 'regex' as const,
        deny: ['(?i)forbidden phrase'],
        stage: 'output' as const,
        action: 'block' as const,
      },
    ],
  ],
  ['preset child-safe', PRESETS['child-safe']!.guardrails],
  ['preset wellbeing (masking)', PRESETS.wellbeing!.guardrails],
] as const) {
  const gateway = new GuardedGateway(
    inner,
    new GuardrailResolution({ base: [...base] as GuardrailConfig[] }).resolve,
    () => {},
  );
  await measure(`per request, ${name}: complete`, () => gateway.complete(request));
  await measure(`per request, ${name}: stream (5-char chunks)`, async () => {
    for await (const _ of (await gateway.stream(request)).events);
  });
}
