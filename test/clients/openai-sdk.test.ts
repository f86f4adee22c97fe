import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources';
import { z } from 'zod';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, eventually, startChatStack } from '../helpers/chat-stack.js';

/** The real `openai` SDK pointed at Colloquy, which points at the fake upstream. */

const REPLY = 'Hello from the fake upstream, streaming word by word.';

const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

describe('the openai SDK against Colloquy', () => {
  let s: ChatStack;
  let client: OpenAI;
  const lastUpstreamBody = () => s.fake.requests.at(-1)!.body;

  before(async () => {
    s = await startChatStack({ env: { UPSTREAM_RETRIES: '2', UPSTREAM_IDLE_TIMEOUT_MS: '2000' } });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
  });

  it('chat.completions.create, non-streaming', async () => {
    const { data: completion, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] })
      .withResponse();
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices[0]?.message.content, REPLY);
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.ok(completion.usage && completion.usage.total_tokens > 0);
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.api_key_id, s.apiKeyId);
    assert.equal(Number(row.prompt_tokens), completion.usage.prompt_tokens);
    assert.equal(Number(row.completion_tokens), completion.usage.completion_tokens);
  });

  it('chat.completions.create, streaming: chunks reassemble the reply; usage only with include_usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), REPLY);
    assert.ok(chunks.length > 5);
    assert.ok(chunks.every((c) => !c.usage));
    assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, 'stop');

    const withUsage = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const all: ChatCompletionChunk[] = [];
    for await (const chunk of withUsage) all.push(chunk);
    assert.equal(all.map((c) => c.choices[0]?.delta.content ?? '').join(''), REPLY);
    const last = all.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.ok(last.usage && last.usage.completion_tokens > 0);
    assert.equal(all.filter((c) => c.usage).length, 1);
  });

  it('the stream helper assembles the final completion', async () => {
    const runner = client.chat.completions.stream({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    const deltas: string[] = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0]?.message.content, REPLY);
    assert.equal(deltas.join(''), REPLY);
  });

  it('multi-part content messages reach the upstream as sent', async () => {
    const messages: ChatCompletionMessageParam[] = [
      { role: 'system', content: [{ type: 'text', text: 'Be brief.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Only one part' }] },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is in this image?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } },
        ],
      },
    ];
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages });
    assert.equal(completion.choices[0]?.message.content, REPLY);
    assert.deepEqual(lastUpstreamBody().messages, messages);
  });

  it('tools and tool_choice: tool_calls parsed by the SDK, then a follow-up with the tool result', async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Paris?' }];
    const first = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages,
      tools: [weatherTool],
      tool_choice: 'auto',
      parallel_tool_calls: false,
    });
    assert.deepEqual(lastUpstreamBody().tools, [weatherTool]);
    assert.equal(lastUpstreamBody().tool_choice, 'auto');
    assert.equal(lastUpstreamBody().parallel_tool_calls, false);
    const choice = first.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    const call = choice.message.tool_calls?.[0];
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { location: 'Paris' });

    const followUp: ChatCompletionMessageParam[] = [
      ...messages,
      choice.message as ChatCompletionMessageParam,
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' },
    ];
    const second = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: followUp,
      tools: [weatherTool],
    });
    assert.equal(second.choices[0]?.message.content, REPLY);
    const sent = lastUpstreamBody().messages as {
      role: string;
      tool_call_id?: string;
      tool_calls?: unknown;
    }[];
    assert.equal(sent.length, 3);
    assert.deepEqual(sent[1]?.tool_calls, choice.message.tool_calls);
    assert.equal(sent[2]?.role, 'tool');
    assert.equal(sent[2]?.tool_call_id, call.id);
  });

  it('streamed tool calls are reassembled from their deltas', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      stream: true,
    });
    let name = '';
    let args = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      const call = chunk.choices[0]?.delta.tool_calls?.[0];
      name += call?.function?.name ?? '';
      args += call?.function?.arguments ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(name, 'get_weather');
    assert.deepEqual(JSON.parse(args), { location: 'Paris' });
    assert.equal(finish, 'tool_calls');
    assert.deepEqual(lastUpstreamBody().tool_choice, { type: 'function', function: { name: 'get_weather' } });
  });

  it('response_format, seed, stop, n and max_completion_tokens pass through', async () => {
    const responseFormat = {
      type: 'json_schema' as const,
      json_schema: {
        name: 'answer',
        strict: true,
        schema: {
          type: 'object',
          properties: { a: { type: 'string' } },
          required: ['a'],
          additionalProperties: false,
        },
      },
    };
    await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
      response_format: responseFormat,
      seed: 42,
      stop: ['\n\n'],
      n: 2,
      max_completion_tokens: 64,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
      user: 'end-user',
    });
    const body = lastUpstreamBody();
    assert.deepEqual(body.response_format, responseFormat);
    assert.equal(body.seed, 42);
    assert.deepEqual(body.stop, ['\n\n']);
    assert.equal(body.n, 2);
    assert.equal(body.max_completion_tokens, 64);
    assert.equal(body.temperature, 0);
    assert.equal(body.logprobs, true);
    assert.equal(body.top_logprobs, 3);
    assert.equal(body.user, 'end-user');
    assert.equal(body.model, 'gpt-4o-mini');
  });

  it('chat.completions.parse with a zod response format', async () => {
    s.fake.set({ reply: '{"city":"Paris","temperature":21}' });
    try {
      const Weather = z.object({ city: z.string(), temperature: z.number() });
      const completion = await client.chat.completions.parse({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Weather in Paris as JSON' }],
        response_format: zodResponseFormat(Weather, 'weather'),
      });
      assert.deepEqual(completion.choices[0]?.message.parsed, { city: 'Paris', temperature: 21 });
      const format = lastUpstreamBody().response_format as { type: string; json_schema: { name: string } };
      assert.equal(format.type, 'json_schema');
      assert.equal(format.json_schema.name, 'weather');
    } finally {
      s.fake.set({ reply: REPLY });
    }
  });

  it('models.list() and models.retrieve()', async () => {
    const ids: string[] = [];
    for await (const model of client.models.list()) ids.push(model.id);
    for (const id of ['gpt-4o-mini', 'gpt-4o', 'ha-model']) assert.ok(ids.includes(id), `${id} in ${ids}`);
    const one = await client.models.retrieve('gpt-4o-mini');
    assert.equal(one.id, 'gpt-4o-mini');
    assert.equal(one.object, 'model');
  });

  it('an alias with a fallback deployment works through the SDK', async () => {
    s.fake.queue({ kind: 'status', status: 500 });
    const completion = await client.chat.completions.create({
      model: 'ha-model',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    assert.equal(completion.choices[0]?.message.content, REPLY);
  });

  it('an upstream 404 surfaces as NotFoundError with the upstream message', async () => {
    const before = s.fake.requests.length;
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.NotFoundError, `got ${String(err)}`);
        assert.equal(err.status, 404);
        assert.equal(err.code, 'model_not_found');
        assert.match(err.message, /The model `no-such-model` does not exist/);
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      }),
      OpenAI.NotFoundError,
    );
    assert.equal(s.fake.requests.length, before + 2, 'no retries');
  });

  it('a bad Colloquy key surfaces as AuthenticationError; the master key works', async () => {
    for (const apiKey of ['nope', `ck-${'a'.repeat(43)}`]) {
      const bad = new OpenAI({ baseURL: `${s.url}/v1`, apiKey, maxRetries: 0 });
      await assert.rejects(
        bad.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
        (err: unknown) => {
          assert.ok(err instanceof OpenAI.AuthenticationError, `got ${String(err)}`);
          assert.equal(err.status, 401);
          return true;
        },
      );
      await assert.rejects(bad.models.list(), OpenAI.AuthenticationError);
    }
    const master = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: TEST_MASTER_KEY, maxRetries: 0 });
    const completion = await master.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(completion.choices[0]?.message.content, REPLY);
  });

  it('an invalid request surfaces as BadRequestError naming the param', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x' }],
        temperature: 9,
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${String(err)}`);
        assert.equal(err.param, 'temperature');
        assert.equal(err.type, 'invalid_request_error');
        return true;
      },
    );
  });

  it('an upstream 429 with a long Retry-After surfaces as RateLimitError with the header', async () => {
    s.fake.queue({ kind: 'status', status: 429, retryAfter: '60' });
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.RateLimitError, `got ${String(err)}`);
        assert.equal(err.headers?.get('retry-after'), '60');
        return true;
      },
    );
  });

  for (const fault of [
    { kind: 'error-event', afterChunks: 2 },
    { kind: 'reset-after', chunks: 2 },
    // Cut with neither a finish_reason nor [DONE]: a stream that did finish but left out [DONE] is complete.
    { kind: 'no-done-unfinished' },
  ] as const) {
    it(`a mid-stream failure (${fault.kind}) is thrown by the stream iterator, not a silent truncation`, async () => {
      s.fake.queue(fault);
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hello' }],
        stream: true,
      });
      let text = '';
      await assert.rejects(
        async () => {
          for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
        },
        (err: unknown) => {
          assert.ok(err instanceof OpenAI.APIError, `got ${String(err)}`);
          assert.ok(err.message.length > 0);
          return true;
        },
      );
      assert.ok(REPLY.startsWith(text));
      if (fault.kind !== 'no-done-unfinished') assert.ok(text.length < REPLY.length, `partial: ${text}`);
    });
  }

  it('aborting a stream from the client stops it cleanly', async () => {
    s.fake.set({ chunkIntervalMs: 20, reply: Array.from({ length: 200 }, (_, i) => `w${i}`).join(' ') });
    try {
      const baseline = s.fake.openSockets();
      const controller = new AbortController();
      const stream = await client.chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'long' }], stream: true },
        { signal: controller.signal },
      );
      let seen = 0;
      // The SDK ends the iteration quietly when its own signal aborts it.
      for await (const _ of stream) if (++seen === 3) controller.abort();
      assert.ok(seen >= 3 && seen < 50, `${seen} chunks`);
      await eventually(() => s.fake.openSockets() <= baseline, 1_000, 'upstream socket closed');
    } finally {
      s.fake.set({ chunkIntervalMs: 0, reply: REPLY });
    }
    const completion = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    assert.equal(completion.choices[0]?.message.content, REPLY);
  });
});
