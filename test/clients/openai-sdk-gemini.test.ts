import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources';
import { type FakeGemini, startFakeGemini } from '../fake-upstream/clouds/gemini.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * The real `openai` SDK against Colloquy, which fronts a fake Gemini API (written from
 * https://ai.google.dev/api/generate-content and https://ai.google.dev/gemini-api/docs/thought-signatures)
 * configured by GEMINI_API_KEY and GEMINI_BASE_URL alone.
 */

const GEMINI_KEY = 'gemini-key-for-the-sdk-test-0123456789';
const MODEL = 'gemini/gemini-2.5-flash';
const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { location: { type: 'string' }, unit: { type: 'string' } },
      required: ['location'],
      additionalProperties: false,
    },
  },
};

describe('the openai SDK against Colloquy fronting the Gemini API', () => {
  let gemini: FakeGemini;
  let s: ChatStack;
  let client: OpenAI;

  before(async () => {
    gemini = await startFakeGemini({ apiKey: GEMINI_KEY });
    s = await startChatStack({
      upstream: false,
      routing: null,
      env: { GEMINI_API_KEY: GEMINI_KEY, GEMINI_BASE_URL: gemini.url, UPSTREAM_RETRIES: '2' },
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await gemini?.close();
  });

  it('chat.completions.create reaches models/{model}:generateContent with x-goog-api-key', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.message.content, 'Hello from Gemini gemini-2.5-flash.');
    assert.deepEqual(completion.usage && { ...completion.usage }, {
      prompt_tokens: 10,
      completion_tokens: 10,
      total_tokens: 20,
    });
    const sent = gemini.requests.at(-1)!;
    assert.equal(sent.path, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(sent.headers['x-goog-api-key'], GEMINI_KEY);
  });

  it('streaming: a stream without [DONE] upstream ends properly for the SDK, with usage', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(gemini.requests.at(-1)!.query.get('alt'), 'sse');
    assert.equal(
      chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''),
      'Hello from Gemini gemini-2.5-flash.',
    );
    assert.equal(chunks.at(-1)?.usage?.total_tokens, 20);
  });

  it('tools across two turns: streamed parallel calls, results by id, the thought signature sent back to Gemini', async () => {
    const messages: ChatCompletionMessageParam[] = [
      { role: 'user', content: 'Weather in Paris and London?' },
    ];
    const runner = client.chat.completions.stream({ model: MODEL, messages, tools: [weather] });
    const first = await runner.finalChatCompletion();
    const message = first.choices[0]!.message;
    assert.equal(first.choices[0]?.finish_reason, 'tool_calls');
    const calls = (message.tool_calls ?? []).filter((c) => c.type === 'function');
    assert.deepEqual(
      calls.map((c) => JSON.parse(c.function.arguments).location),
      ['Paris', 'London'],
    );
    assert.notEqual(calls[0]?.id, calls[1]?.id);
    // The client sends the assistant message back as the SDK assembled it (extension fields included).
    messages.push(message as ChatCompletionMessageParam);
    messages.push({ role: 'tool', tool_call_id: calls[1]!.id, content: '{"temp":12}' });
    messages.push({ role: 'tool', tool_call_id: calls[0]!.id, content: '{"temp":18}' });
    const second = await client.chat.completions.create({ model: MODEL, messages, tools: [weather] });
    assert.equal(second.choices[0]?.message.content, 'Paris and London: {"temp":12} / {"temp":18}');
    const contents = gemini.requests.at(-1)!.body.contents as {
      role: string;
      parts: Record<string, unknown>[];
    }[];
    // The signature Gemini issued with the first call came back on that call's part: not the placeholder.
    assert.equal(contents[1]?.parts[0]?.thoughtSignature, gemini.signatures.at(-2));
    const tools = gemini.requests.at(-2)!.body.tools as { functionDeclarations: { parameters: object }[] }[];
    assert.equal(Object.hasOwn(tools[0]!.functionDeclarations[0]!.parameters, 'additionalProperties'), false);
  });

  it('a blocked prompt is a 400 content_filtered BadRequestError, not retried', async () => {
    const before = gemini.requests.length;
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'blocked words' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.code, 'content_filtered');
        return true;
      },
    );
    assert.equal(gemini.requests.length, before + 1);
  });

  it("throttling is retried after Gemini's RetryInfo delay and the client sees only the answer", async () => {
    gemini.faults.push({ kind: 'throttle', retryDelay: '0.1s' });
    const before = gemini.requests.length;
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.equal(gemini.requests.length, before + 2);
    assert.doesNotMatch(s.t.logText(), /gemini-key-for-the-sdk-test/);
  });
});
