import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type FakeCohere, startFakeCohere } from '../../../test/fake-upstream/clouds/cohere.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../types.js';
import { CohereProvider } from './provider.js';

/**
 * Cohere v2 Chat and Embed against a fake written from Cohere's references (https://docs.cohere.com/reference/chat,
 * https://docs.cohere.com/reference/chat-stream, https://docs.cohere.com/reference/embed; see the fake's header).
 */
const KEY = 'cohere-key-0123456789abcdef';
const MODEL = 'command-a-03-2025';
const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_cohere',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } } },
  },
};
const ask = (content: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: MODEL,
  messages: [{ role: 'user', content }],
  ...extra,
});
async function collect(events: AsyncIterable<{ chunk: ChatCompletionChunk }>) {
  const chunks: ChatCompletionChunk[] = [];
  for await (const { chunk } of events) chunks.push(chunk);
  return chunks;
}
async function rejection(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${err}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('Cohere provider', () => {
  let fake: FakeCohere;
  afterEach(() => fake?.close());
  const cohere = () => new CohereProvider({ apiKey: KEY, baseUrl: fake.url });

  it('POST /v2/chat with the bearer key; parameters renamed (p, k, stop_sequences); usage from usage.tokens', async () => {
    fake = await startFakeCohere(KEY);
    const completion = await cohere().complete(
      ask('Hi', {
        top_p: 0.5,
        top_k: 10,
        stop: 'END',
        max_tokens: 20,
        tool_choice: 'required',
        tools: [weather],
      }),
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v2/chat');
    assert.equal(sent.headers.authorization, `Bearer ${KEY}`);
    assert.equal(sent.body.p, 0.5);
    assert.equal(sent.body.k, 10);
    assert.deepEqual(sent.body.stop_sequences, ['END']);
    assert.equal(sent.body.max_tokens, 20);
    assert.equal(sent.body.tool_choice, 'REQUIRED');
    assert.equal(completion.choices[0]?.message.content, 'Hello from Cohere.');
    assert.deepEqual(completion.usage, { prompt_tokens: 70, completion_tokens: 12, total_tokens: 82 });
  });

  it('streams tool calls: plan, id and name, arguments split across tool-call-delta events; finish tool_calls', async () => {
    fake = await startFakeCohere(KEY);
    const chunks = await collect(
      await cohere().stream(ask('Weather in Paris?', { tools: [weather] }), options()),
    );
    assert.equal(fake.requests.at(-1)!.body.stream, true);
    const calls = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.equal(calls[0]?.id, 'get_weather_x7k2');
    assert.equal(calls[0]?.function?.name, 'get_weather');
    assert.ok(calls.length >= 4, 'the arguments came in several events');
    assert.deepEqual(JSON.parse(calls.map((c) => c.function?.arguments ?? '').join('')), {
      location: 'Paris',
    });
    assert.equal(
      chunks
        .map((c) => (c.choices[0]?.delta as { tool_plan?: string } | undefined)?.tool_plan ?? '')
        .join(''),
      'I will look up the weather.',
    );
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)?.usage, { prompt_tokens: 70, completion_tokens: 12, total_tokens: 82 });
  });

  it('the tool turn goes back with tool_plan and tool_call_id; the answer keeps its citations as an extension', async () => {
    fake = await startFakeCohere(KEY);
    const first = await cohere().complete(ask('Weather in Paris?', { tools: [weather] }), options());
    const assistant = first.choices[0]!.message as ChatMessage;
    assert.equal(assistant.tool_plan, 'I will look up the weather.');
    const call = assistant.tool_calls![0]!;
    const second = await cohere().complete(
      ask('', {
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          assistant,
          { role: 'tool', tool_call_id: call.id, content: '18°C' },
        ],
      }),
      options(),
    );
    const sent = fake.requests.at(-1)!.body.messages as Record<string, unknown>[];
    assert.equal(sent[1]?.tool_plan, 'I will look up the weather.');
    assert.equal((sent[1]!.tool_calls as { id: string }[])[0]?.id, 'get_weather_x7k2');
    assert.deepEqual(sent[2], { role: 'tool', tool_call_id: 'get_weather_x7k2', content: '18°C' });
    const message = second.choices[0]!.message as ChatMessage;
    assert.equal(message.content, 'It is 18°C in Paris.');
    assert.deepEqual((message.citations as { text: string }[])[0]?.text, '18°C');
    const streamed = await collect(
      await cohere().stream(
        ask('', {
          messages: [
            { role: 'user', content: 'Weather in Paris?' },
            assistant,
            { role: 'tool', tool_call_id: call.id, content: '18°C' },
          ],
        }),
        options(),
      ),
    );
    const cited = streamed.flatMap(
      (c) => (c.choices[0]?.delta as { citations?: unknown[] } | undefined)?.citations ?? [],
    );
    assert.equal(cited.length, 1);
  });

  it('errors: 401 is upstream_auth_failed without the key; 429 retryable with retry-after; 500 retryable', async () => {
    fake = await startFakeCohere(KEY);
    const wrong = new CohereProvider({ apiKey: 'wrong-cohere-key-0123456789', baseUrl: fake.url });
    const auth = await rejection(wrong.complete(ask('Hi'), options()));
    assert.equal(auth.details.code, 'upstream_auth_failed');
    assert.match(auth.message, /invalid api token/);
    fake.faults.push('throttle', 'server_error');
    const throttled = await rejection(cohere().complete(ask('Hi'), options()));
    assert.equal(throttled.details.status, 429);
    assert.equal(throttled.details.retryAfterMs, 1_000);
    assert.equal(throttled.retryable, true);
    const failed = await rejection(cohere().stream(ask('Hi'), options()));
    assert.equal(failed.retryable, true);
    await cohere().checkAccess(AbortSignal.timeout(5_000));
  });

  it('Embed v2: texts, input_type, embedding_types float, output_dimension; usage from billed units', async () => {
    fake = await startFakeCohere(KEY);
    const result = await cohere().embed(
      { model: 'embed-v4.0', input: ['a', 'bb'], dimensions: 4 },
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v2/embed');
    assert.deepEqual(sent.body, {
      model: 'embed-v4.0',
      texts: ['a', 'bb'],
      input_type: 'search_document',
      embedding_types: ['float'],
      output_dimension: 4,
    });
    assert.equal(result.data.length, 2);
    assert.equal((result.data[1]!.embedding as number[]).length, 4);
    assert.equal(result.usage.prompt_tokens, 4);
  });
});
