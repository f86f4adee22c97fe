import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeDeepSeek, startFakeMistral } from '../../../test/fake-upstream/clouds/openai-compatible.js';
import type { FakeServer } from '../../../test/fake-upstream/clouds/wire.js';
import { loadConfig } from '../../config/load-config.js';
import { CallController } from '../../core/call-signal.js';
import { createLogger } from '../../core/logger.js';
import type { ProviderError } from '../errors.js';
import { createGateway, createProviders } from '../registry.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../types.js';
import { createPresetProvider } from './presets.js';
import { mistralToolCallId } from './quirks.js';

/** The OpenAI-compatible presets' quirk shims, against fakes of Mistral and DeepSeek (see the fakes' sources). */

const KEY = 'preset-key-0123456789abcdef';
const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_preset',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } } },
  },
};

function memoryLogger() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', format: 'json', destination }), lines };
}

/** A conversation that began on OpenAI: its tool-call ids are OpenAI's (`call_…`). */
const openAiHistory = (): ChatMessage[] => [
  { role: 'user', content: 'Weather in Paris and Lyon?' },
  {
    role: 'assistant',
    content: null,
    tool_calls: [
      {
        id: 'call_Vx1yQk2OpenAI0001',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
      },
      {
        id: 'call_Vx1yQk2OpenAI0002',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"location":"Lyon"}' },
      },
    ],
  },
  { role: 'tool', tool_call_id: 'call_Vx1yQk2OpenAI0001', content: '18°C' },
  { role: 'tool', tool_call_id: 'call_Vx1yQk2OpenAI0002', content: '21°C' },
];

describe('the mistral preset', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  it('rewrites foreign tool-call ids to 9 alphanumerics, pairing calls and results, the same on every turn', async () => {
    fake = await startFakeMistral(KEY);
    const mistral = createPresetProvider({
      name: 'mistral',
      preset: 'mistral',
      apiKey: KEY,
      baseUrl: `${fake.url}/v1`,
    });
    const body: ChatCompletionRequest = {
      model: 'mistral-large-latest',
      messages: openAiHistory(),
      tools: [weather],
    };
    const first = await mistral.complete(body, options());
    assert.equal(first.choices[0]?.message.content, 'Mistral saw 4 messages.');
    const sent = (fake.requests.at(-1)!.body.messages as ChatMessage[]).slice(1);
    const ids = sent[0]!.tool_calls!.map((c) => c.id);
    assert.ok(ids.every((id) => /^[A-Za-z0-9]{9}$/.test(id)));
    assert.notEqual(ids[0], ids[1]);
    assert.deepEqual([sent[1]!.tool_call_id, sent[2]!.tool_call_id], ids);
    // The client's own messages are not changed.
    assert.equal(body.messages[2]!.tool_call_id, 'call_Vx1yQk2OpenAI0001');
    // The next turn (streamed this time) maps the same ids the same way.
    const next = {
      ...body,
      messages: [
        ...body.messages,
        { role: 'assistant' as const, content: 'Done.' },
        { role: 'user' as const, content: 'And Nice?' },
      ],
    };
    for await (const _ of await mistral.stream(next, options())) {
      // drained
    }
    const again = (fake.requests.at(-1)!.body.messages as ChatMessage[])[1]!.tool_calls!.map((c) => c.id);
    assert.deepEqual(again, ids);
    assert.equal(ids[0], mistralToolCallId('call_Vx1yQk2OpenAI0001'));
  });

  it("passes Mistral's own ids through both ways, and streams tool calls with usage on the last chunk", async () => {
    fake = await startFakeMistral(KEY);
    const mistral = createPresetProvider({
      name: 'mistral',
      preset: 'mistral',
      apiKey: KEY,
      baseUrl: `${fake.url}/v1`,
    });
    const chunks: ChatCompletionChunk[] = [];
    const events = await mistral.stream(
      { model: 'mistral-small-latest', messages: [{ role: 'user', content: 'Weather?' }], tools: [weather] },
      options(),
    );
    for await (const { chunk } of events) chunks.push(chunk);
    const calls = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.equal(calls[0]?.id, 'D681PevKs');
    assert.equal(calls.map((c) => c.function?.arguments ?? '').join(''), '{"location":"Paris"}');
    assert.deepEqual(chunks.at(-1)?.usage, { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 });
    const sent = fake.requests.at(-1)!.body;
    assert.equal(sent.stream_options, undefined, 'stream_options is not sent to Mistral');
  });

  it('renames seed and drops parameters Mistral refuses, with a debug line naming them', async () => {
    fake = await startFakeMistral(KEY);
    const { logger, lines } = memoryLogger();
    const mistral = createPresetProvider({
      name: 'mistral',
      preset: 'mistral',
      apiKey: KEY,
      baseUrl: `${fake.url}/v1`,
      logger,
    });
    await mistral.complete(
      {
        model: 'mistral-large-latest',
        messages: [{ role: 'user', content: 'hi' }],
        seed: 7,
        logprobs: true,
        user: 'u1',
        max_completion_tokens: 20,
      },
      options(),
    );
    const sent = fake.requests.at(-1)!.body;
    assert.equal(sent.random_seed, 7);
    assert.equal(sent.max_tokens, 20);
    assert.equal(sent.seed, undefined);
    assert.equal(sent.logprobs, undefined);
    await sleep(10);
    const dropped = lines.find((l) => Array.isArray(l.dropped));
    assert.deepEqual(dropped?.dropped, ['logprobs', 'user']);
    assert.equal(dropped?.level, 20, 'debug');
  });

  it('without the preset (plain openai type) Mistral refuses the same conversation', async () => {
    fake = await startFakeMistral(KEY);
    const { OpenAiProvider } = await import('../openai/provider.js');
    const plain = new OpenAiProvider({ baseUrl: `${fake.url}/v1`, apiKey: KEY });
    await assert.rejects(
      plain.complete({ model: 'mistral-large-latest', messages: openAiHistory() }, options()),
      (err: ProviderError) => /must be a-z, A-Z, 0-9/.test(err.message),
    );
  });
});

describe('the deepseek preset', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  it('keeps reasoning_content in answers and stream deltas', async () => {
    fake = await startFakeDeepSeek(KEY);
    const deepseek = createPresetProvider({
      name: 'deepseek',
      preset: 'deepseek',
      apiKey: KEY,
      baseUrl: fake.url,
    });
    const ask: ChatCompletionRequest = {
      model: 'deepseek-reasoner',
      messages: [{ role: 'user', content: '9.11 or 9.8?' }],
    };
    const answer = await deepseek.complete(ask, options());
    assert.equal(fake.requests.at(-1)!.path, '/chat/completions');
    assert.equal(
      (answer.choices[0]!.message as { reasoning_content?: string }).reasoning_content,
      'Compare 9.11 and 9.8: 9.8 is larger.',
    );
    let reasoning = '';
    for await (const { chunk } of await deepseek.stream(ask, options()))
      reasoning +=
        (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    assert.equal(reasoning, 'Compare 9.11 and 9.8: 9.8 is larger.');
  });

  it('sends reasoning_content back on tool-call turns only, and drops logprobs for the reasoner', async () => {
    fake = await startFakeDeepSeek(KEY);
    const deepseek = createPresetProvider({
      name: 'deepseek',
      preset: 'deepseek',
      apiKey: KEY,
      baseUrl: fake.url,
    });
    const messages: ChatMessage[] = [
      { role: 'user', content: '9.11 or 9.8?' },
      { role: 'assistant', content: '9.8', reasoning_content: 'earlier thoughts' },
      { role: 'user', content: 'Weather in Hangzhou?' },
      {
        role: 'assistant',
        content: null,
        reasoning_content: 'I need the weather tool.',
        tool_calls: [
          { id: 'call_00_ds1', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_00_ds1', content: 'Cloudy 24°C' },
    ];
    const answer = await deepseek.complete(
      { model: 'deepseek-reasoner', messages, tools: [weather], logprobs: true },
      options(),
    );
    assert.equal(answer.choices[0]?.message.content, 'The answer is 9.8.');
    const sent = fake.requests.at(-1)!.body.messages as ChatMessage[];
    assert.equal(sent[1]!.reasoning_content, undefined);
    assert.equal(sent[3]!.reasoning_content, 'I need the weather tool.');
  });
});

describe('presets configured by environment alone', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  it('MISTRAL_API_KEY creates the mistral provider; mistral/<model> routes to it with no routing file', async () => {
    fake = await startFakeMistral(KEY);
    const config = loadConfig(
      {
        MISTRAL_API_KEY: KEY,
        MISTRAL_BASE_URL: `${fake.url}/v1`,
        GROQ_API_KEY: 'gsk_0123456789',
        DEMO_WORD_DELAY_MS: '0',
      },
      { dotenvDir: null },
    );
    const names = [...createProviders(config.providers).keys()];
    assert.ok(names.includes('mistral') && names.includes('groq'));
    assert.ok(!names.includes('deepseek'));
    const { logger } = memoryLogger();
    const gateway = createGateway(config.providers, logger);
    const result = await gateway.complete({
      body: { model: 'mistral/mistral-large-latest', messages: [{ role: 'user', content: 'hi' }] },
      requestId: 'req_env',
    });
    assert.equal(result.route.provider, 'mistral');
    assert.equal(fake.requests.at(-1)!.body.model, 'mistral-large-latest');
  });

  it('a routing file provider of type deepseek gets the preset base URL and quirks', () => {
    const providers = createProviders({
      ...loadConfig({ DEMO_WORD_DELAY_MS: '0' }, { dotenvDir: null }).providers,
      routing: { providers: [{ name: 'ds', type: 'deepseek', api_key: KEY }] },
    });
    assert.equal(providers.get('ds')?.kind, 'openai');
  });
});

describe('parameters dropped per preset and model', () => {
  let fake: FakeServer;
  afterEach(() => fake?.close());

  it('xai drops penalties and stop for reasoning models only; groq drops logprobs; openrouter forwards all', async () => {
    const { startServer, sendJson, completion } = await import('../../../test/fake-upstream/clouds/wire.js');
    fake = await startServer((req, res) =>
      sendJson(res, 200, completion(String(req.body.model), { text: 'ok' })),
    );
    const body = (model: string): ChatCompletionRequest => ({
      model,
      messages: [{ role: 'user', content: 'hi' }],
      presence_penalty: 0.5,
      frequency_penalty: 0.5,
      stop: ['END'],
      logprobs: true,
    });
    const sent = async (preset: 'xai' | 'groq' | 'openrouter', model: string) => {
      const provider = createPresetProvider({ name: preset, preset, apiKey: KEY, baseUrl: fake.url });
      await provider.complete(body(model), options());
      return Object.keys(fake.requests.at(-1)!.body).sort();
    };
    const all = ['frequency_penalty', 'logprobs', 'messages', 'model', 'presence_penalty', 'stop', 'stream'];
    assert.deepEqual(await sent('xai', 'grok-4-0709'), ['logprobs', 'messages', 'model', 'stream']);
    assert.deepEqual(await sent('xai', 'grok-3-mini'), ['logprobs', 'messages', 'model', 'stream']);
    assert.deepEqual(await sent('xai', 'grok-2-1212'), all);
    assert.deepEqual(
      await sent('groq', 'llama-3.1-8b-instant'),
      all.filter((k) => k !== 'logprobs'),
    );
    assert.deepEqual(await sent('openrouter', 'openai/gpt-4o'), all);
  });
});
