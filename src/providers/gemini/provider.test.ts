import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type FakeGemini, startFakeGemini } from '../../../test/fake-upstream/clouds/gemini.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../types.js';
import { GeminiProvider } from './provider.js';

/**
 * The Gemini API provider against a fake written from Google's references (see the fake's header):
 * https://ai.google.dev/api/generate-content, https://ai.google.dev/gemini-api/docs/thought-signatures,
 * https://ai.google.dev/api/embeddings.
 */

const KEY = 'gemini-api-key-0123456789abcdef';
const MODEL = 'gemini-2.5-flash';

const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_gemini',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});

const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      additionalProperties: false,
      properties: {
        location: { type: 'string' },
        unit: { type: ['string', 'null'], enum: ['celsius', 'fahrenheit'] },
      },
      required: ['location'],
    },
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

describe('Gemini API provider', () => {
  let fake: FakeGemini;
  afterEach(() => fake?.close());
  const gemini = () => new GeminiProvider({ apiKey: KEY, baseUrl: fake.url });

  it('generateContent: the model path, x-goog-api-key, systemInstruction and generationConfig; usage counts thoughts', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const completion = await gemini().complete(
      {
        model: MODEL,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
        ],
        temperature: 0.2,
        top_p: 0.9,
        top_k: 40,
        max_tokens: 100,
        stop: 'END',
        n: 1,
        reasoning_effort: 'low',
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', schema: { type: 'object', additionalProperties: false, properties: {} } },
        },
      },
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, `/v1beta/models/${MODEL}:generateContent`);
    assert.equal(sent.headers['x-goog-api-key'], KEY);
    assert.equal(sent.query.get('key'), null, 'the key never goes in the query string');
    assert.deepEqual(sent.body.systemInstruction, { parts: [{ text: 'Be brief.' }] });
    assert.deepEqual(sent.body.contents, [{ role: 'user', parts: [{ text: 'Hi' }] }]);
    assert.deepEqual(sent.body.generationConfig, {
      temperature: 0.2,
      topP: 0.9,
      topK: 40,
      maxOutputTokens: 100,
      stopSequences: ['END'],
      candidateCount: 1,
      thinkingConfig: { thinkingBudget: 1024 },
      responseMimeType: 'application/json',
      responseSchema: { type: 'object', properties: {} },
    });
    assert.equal(completion.choices[0]?.message.content, `Hello from Gemini ${MODEL}.`);
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    // 6 candidate tokens + 4 thought tokens are the completion.
    assert.deepEqual(completion.usage, { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 });
    // The text part's signature is kept for the next turn.
    const message = completion.choices[0]!.message as ChatMessage;
    assert.deepEqual(message.extra_content, { google: { thought_signature: fake.signatures[0] } });
  });

  it('streams with ?alt=sse and no [DONE]: text reassembled, finish reason, one usage chunk at the close', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const chunks = await collect(await gemini().stream(ask('Hi'), options()));
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, `/v1beta/models/${MODEL}:streamGenerateContent`);
    assert.equal(sent.query.get('alt'), 'sse');
    assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
    assert.equal(
      chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''),
      `Hello from Gemini ${MODEL}.`,
    );
    assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason).length, 1);
    assert.equal(chunks.at(-2)?.choices[0]?.finish_reason, 'stop');
    assert.deepEqual(chunks.at(-1)?.choices, []);
    assert.deepEqual(chunks.at(-1)?.usage, { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 });
  });

  it('a stream the connection ends before any finishReason is a retryable protocol error, not a short answer', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    fake.faults.push({ kind: 'truncated' });
    const events = await gemini().stream(ask('Hi'), options());
    const err = await rejection(collect(events));
    assert.equal(err.details.code, 'upstream_bad_response');
    assert.equal(err.retryable, true);
  });

  it('tools: declarations cleaned of what Gemini rejects, tool_choice as functionCallingConfig, parallel calls with ids and the signature', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const completion = await gemini().complete(
      ask('Weather in Paris and London?', {
        tools: [weather],
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
      }),
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.deepEqual(sent.body.tools, [
      {
        functionDeclarations: [
          {
            name: 'get_weather',
            description: 'Current weather',
            parameters: {
              type: 'object',
              properties: {
                location: { type: 'string' },
                unit: { type: 'string', nullable: true, enum: ['celsius', 'fahrenheit'] },
              },
              required: ['location'],
            },
          },
        ],
      },
    ]);
    assert.deepEqual(sent.body.toolConfig, {
      functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] },
    });
    const message = completion.choices[0]!.message;
    assert.equal(completion.choices[0]?.finish_reason, 'tool_calls');
    assert.equal(message.tool_calls?.length, 2);
    const [paris, london] = message.tool_calls!;
    assert.match(paris!.id, /^call_/);
    assert.notEqual(paris!.id, london!.id);
    assert.deepEqual(JSON.parse(paris!.function.arguments), { location: 'Paris', unit: 'celsius' });
    assert.deepEqual(JSON.parse(london!.function.arguments), { location: 'London' });
    // Only the first of parallel calls carries the signature (as Gemini sends it).
    assert.equal((paris as { extra_content?: unknown }).extra_content !== undefined, true);
    assert.equal((london as { extra_content?: unknown }).extra_content, undefined);
  });

  it('streamed calls, one per event, get consecutive indexes and their own ids; the answer is tool_calls', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const chunks = await collect(
      await gemini().stream(ask('Weather in Paris and London?', { tools: [weather] }), options()),
    );
    const calls = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.deepEqual(
      calls.map((c) => [c.index, c.function?.name, JSON.parse(c.function?.arguments ?? '')]),
      [
        [0, 'get_weather', { location: 'Paris', unit: 'celsius' }],
        [1, 'get_weather', { location: 'London' }],
      ],
    );
    assert.ok(calls[0]?.id && calls[1]?.id && calls[0].id !== calls[1].id);
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'tool_calls');
  });

  it('thought signatures go back on the next turn in the part they came in; results map to calls by id', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const provider = gemini();
    const first = await provider.complete(
      ask('Weather in Paris and London?', { tools: [weather] }),
      options(),
    );
    const assistant = first.choices[0]!.message;
    const [paris, london] = assistant.tool_calls!;
    const second = await provider.complete(
      ask('', {
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather in Paris and London?' },
          assistant as ChatMessage,
          // Answered out of order: the ids say which is which.
          { role: 'tool', tool_call_id: london!.id, content: '{"temp":12}' },
          { role: 'tool', tool_call_id: paris!.id, content: 'sunny, 18°C' },
        ],
      }),
      options(),
    );
    const contents = fake.requests.at(-1)!.body.contents as {
      role: string;
      parts: Record<string, unknown>[];
    }[];
    assert.equal(contents.length, 3);
    assert.equal(contents[1]?.role, 'model');
    assert.equal(contents[1]?.parts[0]?.thoughtSignature, fake.signatures[0]);
    assert.equal(contents[1]?.parts[1]?.thoughtSignature, undefined);
    assert.deepEqual(contents[2], {
      role: 'user',
      parts: [
        { functionResponse: { name: 'get_weather', response: { temp: 12 } } },
        { functionResponse: { name: 'get_weather', response: { result: 'sunny, 18°C' } } },
      ],
    });
    assert.equal(
      second.choices[0]?.message.content,
      'Paris and London: {"temp":12} / {"result":"sunny, 18°C"}',
    );
  });

  it('a dropped signature would be refused by Gemini: a call from another provider gets the documented placeholder', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const history: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'toolu_01',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_01', content: '18' },
    ];
    const answer = await gemini().complete(ask('', { tools: [weather], messages: history }), options());
    const contents = fake.requests.at(-1)!.body.contents as { parts: Record<string, unknown>[] }[];
    assert.equal(contents[1]?.parts[0]?.thoughtSignature, 'skip_thought_signature_validator');
    assert.match(answer.choices[0]?.message.content ?? '', /Paris and London/);
  });

  it('a blocked prompt is 400 content_filtered (complete and stream), never retried', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    for (const call of [
      () => gemini().complete(ask('something blocked'), options()),
      () => gemini().stream(ask('something blocked'), options()),
    ]) {
      const err = await rejection(call());
      assert.equal(err.details.status, 400);
      assert.equal(err.details.code, 'content_filtered');
      assert.match(err.message, /PROHIBITED_CONTENT/);
      assert.equal(err.retryable, false);
    }
  });

  it('an answer stopped by SAFETY before any text is content_filtered; MAX_TOKENS is finish_reason length', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const filtered = await rejection(gemini().stream(ask('unsafe please'), options()));
    assert.equal(filtered.details.code, 'content_filtered');
    assert.match(filtered.message, /SAFETY/);
    const long = await gemini().complete(ask('a long story'), options());
    assert.equal(long.choices[0]?.finish_reason, 'length');
    assert.equal(long.choices[0]?.message.content, 'It was a dark and');
  });

  it('429 RESOURCE_EXHAUSTED is retryable with the RetryInfo delay; 503 UNAVAILABLE is retryable', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    fake.faults.push({ kind: 'throttle', retryDelay: '37s' }, { kind: 'unavailable' });
    const throttled = await rejection(gemini().complete(ask('Hi'), options()));
    assert.equal(throttled.details.status, 429);
    assert.equal(throttled.details.code, 'upstream_rate_limited');
    assert.equal(throttled.details.retryAfterMs, 37_000);
    assert.equal(throttled.retryable, true);
    const unavailable = await rejection(gemini().stream(ask('Hi'), options()));
    assert.equal(unavailable.details.status, 503);
    assert.equal(unavailable.retryable, true);
  });

  it("a wrong key (Gemini's 400 API_KEY_INVALID) is Colloquy's fault: 502 upstream_auth_failed, the key not echoed", async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const wrong = new GeminiProvider({ apiKey: 'wrong-gemini-key-0123456789', baseUrl: fake.url });
    const err = await rejection(wrong.complete(ask('Hi'), options()));
    assert.equal(err.details.status, 502);
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.doesNotMatch(err.message, /wrong-gemini-key/);
    await assert.rejects(wrong.checkAccess(AbortSignal.timeout(5_000)), /credentials/);
    await gemini().checkAccess(AbortSignal.timeout(5_000));
  });

  it('an INVALID_ARGUMENT is relayed as a 400; an unknown model is 404 model_not_found', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const invalid = await rejection(gemini().complete({ model: MODEL, messages: [] }, options()));
    assert.equal(invalid.details.status, 400);
    assert.match(invalid.message, /contents is not specified/);
    const missing = await rejection(
      gemini().complete({ ...ask('Hi'), model: 'nonexistent-model' }, options()),
    );
    assert.equal(missing.details.status, 404);
    assert.equal(missing.details.code, 'model_not_found');
  });

  it('embeddings: one text through :embedContent, several through :batchEmbedContents, dimensions as outputDimensionality', async () => {
    fake = await startFakeGemini({ apiKey: KEY });
    const one = await gemini().embed(
      { model: 'gemini-embedding-001', input: 'hello', dimensions: 4 },
      options(),
    );
    let sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v1beta/models/gemini-embedding-001:embedContent');
    assert.deepEqual(sent.body, { content: { parts: [{ text: 'hello' }] }, outputDimensionality: 4 });
    assert.equal((one.data[0]!.embedding as number[]).length, 4);
    assert.ok(one.usage.prompt_tokens > 0);
    const many = await gemini().embed(
      { model: 'gemini-embedding-001', input: ['a', 'bb', 'ccc'], encoding_format: 'base64' },
      options(),
    );
    sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/v1beta/models/gemini-embedding-001:batchEmbedContents');
    assert.equal((sent.body.requests as unknown[]).length, 3);
    assert.deepEqual(
      many.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.equal(typeof many.data[0]?.embedding, 'string');
  });
});
