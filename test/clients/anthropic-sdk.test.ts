import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { type ChatStack, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';

/**
 * The official `@anthropic-ai/sdk` pointed at Colloquy's Messages API (issue 20), with Colloquy in front of
 * an OpenAI-format upstream (translated both ways) and an Anthropic-format one (passed through). The
 * Anthropic upstream replays the provider's fixtures, written from Anthropic's published wire format:
 * https://docs.anthropic.com/en/api/messages and https://docs.anthropic.com/en/api/messages-streaming
 */

const fixture = (name: string) =>
  readFileSync(new URL(`../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');
const REPLY = 'Hello from the fake upstream, streaming word by word.';

const weather: Anthropic.Tool = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
};

/** An OpenAI chunk as `data:` line. */
const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
const usageChunk = (prompt: number, completion: number) =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  })}\n\n`;

/** The event names of a Messages stream, in order. */
const eventNames = (text: string) => [...text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);

describe('the Anthropic SDK against Colloquy’s Messages API', () => {
  let s: ChatStack;
  let claude: ScriptedUpstream;
  let scripted: ScriptedUpstream;
  let client: Anthropic;
  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': s.apiKey, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  before(async () => {
    claude = await startScriptedUpstream();
    scripted = await startScriptedUpstream();
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0', UPSTREAM_IDLE_TIMEOUT_MS: '2000' },
      routing: () => ({
        providers: [
          {
            name: 'claude',
            type: 'anthropic',
            base_url: claude.url,
            headers: { 'anthropic-beta': 'configured-1' },
          },
          { name: 'scripted', type: 'openai', base_url: `${scripted.url}/v1` },
        ],
        models: [
          {
            name: 'claude-sonnet',
            deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }],
          },
          { name: 'scripted-model', deployments: [{ provider: 'scripted', model: 'gpt-4o-mini' }] },
        ],
        router: { backoff: { initial_ms: 10, max_ms: 50 } },
      }),
    });
    client = new Anthropic({ baseURL: s.url, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await claude?.close();
    await scripted?.close();
  });

  describe('translated onto an OpenAI-format upstream', () => {
    it('messages.create: text, stop reason end_turn, usage, and the request translated', async () => {
      const { data: message, response } = await client.messages
        .create({
          model: 'gpt-4o-mini',
          max_tokens: 64,
          system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
          messages: [{ role: 'user', content: [{ type: 'text', text: 'Say hello' }] }],
          stop_sequences: ['END'],
          temperature: 0.5,
          top_p: 0.9,
          metadata: { user_id: 'end-user-7' },
        })
        .withResponse();
      assert.equal(message.type, 'message');
      assert.equal(message.role, 'assistant');
      assert.equal(message.model, 'gpt-4o-mini');
      assert.deepEqual(message.content, [{ type: 'text', text: REPLY }]);
      assert.equal(message.stop_reason, 'end_turn');
      assert.ok(message.usage.input_tokens > 0);
      assert.equal(message.usage.output_tokens, 9);
      const upstream = s.fake.requests.at(-1)!.body;
      assert.deepEqual(upstream.messages, [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello' },
      ]);
      assert.deepEqual(upstream.stop, ['END']);
      assert.equal(upstream.max_tokens, 64);
      assert.equal(upstream.temperature, 0.5);
      assert.equal(upstream.user, 'end-user-7');
      const requestId = response.headers.get('x-request-id') ?? '';
      const row = await s.usageRow(requestId);
      assert.equal(row.protocol, 'messages');
      assert.equal(row.completion_tokens, 9);
      assert.equal(row.status, 'ok');
    });

    it('messages.stream + finalMessage, and a tool-use round trip (tool_use → tool_result → text)', async () => {
      const stream = client.messages.stream({
        model: 'gpt-4o-mini',
        max_tokens: 64,
        tools: [weather],
        tool_choice: { type: 'auto' },
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
      });
      const first = await stream.finalMessage();
      assert.equal(first.stop_reason, 'tool_use');
      const use = first.content.find((b) => b.type === 'tool_use');
      assert.ok(use && use.type === 'tool_use');
      assert.equal(use.name, 'get_weather');
      assert.deepEqual(use.input, { location: 'Paris' });
      const sent = s.fake.requests.at(-1)!.body as {
        tools: { function: { name: string } }[];
        tool_choice: unknown;
      };
      assert.equal(sent.tools[0]!.function.name, 'get_weather');
      assert.equal(sent.tool_choice, 'auto');

      const second = await client.messages.create({
        model: 'gpt-4o-mini',
        max_tokens: 64,
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: use.id, content: '18°C and sunny' },
              { type: 'text', text: 'Thanks' },
            ],
          },
        ],
      });
      assert.equal(second.stop_reason, 'end_turn');
      assert.deepEqual(second.content, [{ type: 'text', text: REPLY }]);
      const messages = s.fake.requests.at(-1)!.body.messages as Record<string, unknown>[];
      assert.deepEqual(messages.slice(1), [
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: use.id,
              type: 'function',
              function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: use.id, content: '18°C and sunny' },
        { role: 'user', content: 'Thanks' },
      ]);
    });

    it('streams reasoning and tool arguments split across chunks as thinking and input_json_delta blocks', async () => {
      scripted.handle((_req, res) =>
        sendSse(res, [
          chunk({ role: 'assistant', reasoning_content: 'Paris, ' }),
          chunk({ reasoning_content: 'so metric.' }),
          chunk({ content: 'Checking.' }),
          chunk({
            tool_calls: [
              { index: 0, id: 'call_9', type: 'function', function: { name: 'get_weather', arguments: '' } },
            ],
          }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{"loca' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: 'tion":"Pa' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] }),
          chunk({}, 'tool_calls'),
          usageChunk(31, 12),
          'data: [DONE]\n\n',
        ]),
      );
      const raw = await (
        await post({
          model: 'scripted-model',
          max_tokens: 64,
          stream: true,
          tools: [weather],
          messages: [{ role: 'user', content: 'Weather?' }],
        })
      ).text();
      const start = JSON.parse(raw.split('\n')[1]!.slice('data: '.length));
      assert.ok(start.message.usage.input_tokens > 0, 'message_start estimates the prompt');
      assert.deepEqual(eventNames(raw), [
        'message_start',
        'ping',
        'content_block_start', // thinking
        'content_block_delta',
        'content_block_delta',
        'content_block_stop',
        'content_block_start', // text
        'content_block_delta',
        'content_block_stop',
        'content_block_start', // tool_use
        'content_block_delta',
        'content_block_delta',
        'content_block_delta',
        'content_block_stop',
        'message_delta',
        'message_stop',
      ]);

      const message = await client.messages
        .stream({
          model: 'scripted-model',
          max_tokens: 64,
          tools: [weather],
          messages: [{ role: 'user', content: 'Weather?' }],
        })
        .finalMessage();
      assert.deepEqual(message.content as unknown[], [
        { type: 'thinking', thinking: 'Paris, so metric.', signature: '' },
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'call_9', name: 'get_weather', input: { location: 'Paris' } },
      ]);
      assert.equal(message.stop_reason, 'tool_use');
      assert.deepEqual(message.usage, { input_tokens: 31, output_tokens: 12 });
    });

    it('countTokens counts the conversation with Colloquy’s tokenizer', async () => {
      const small = await client.messages.countTokens({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Hi' }],
      });
      const large = await client.messages.countTokens({
        model: 'gpt-4o-mini',
        system: 'You are a careful assistant who answers in full sentences.',
        tools: [weather],
        messages: [{ role: 'user', content: 'Hi there, what is the weather like in Paris today?' }],
      });
      assert.ok(small.input_tokens > 0);
      assert.ok(
        large.input_tokens > small.input_tokens + 20,
        `${large.input_tokens} vs ${small.input_tokens}`,
      );
    });
  });

  describe('passed through to an Anthropic deployment', () => {
    it('streams the upstream’s events as they came: thinking with its signature survives, usage is recorded', async () => {
      claude.handle((_req, res) => sendSse(res, [fixture('stream-max-tokens.sse')]));
      const body = {
        model: 'claude-sonnet',
        max_tokens: 20,
        thinking: { type: 'enabled' as const, budget_tokens: 1024 },
        system: [{ type: 'text' as const, text: 'Count.', cache_control: { type: 'ephemeral' as const } }],
        messages: [{ role: 'user' as const, content: 'Count to four' }],
      };
      const stream = client.messages.stream(body, {
        headers: { 'anthropic-beta': 'interleaved-thinking-2025-05-14', 'x-secret-header': 'nope' },
      });
      const message = await stream.finalMessage();
      assert.deepEqual(message.content[0], {
        type: 'thinking',
        thinking: "The user wants a count. I'll start at one.",
        signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds',
      });
      assert.equal(message.stop_reason, 'max_tokens');
      // The client's body, untouched but for the model.
      const upstream = claude.requests.at(-1)!;
      assert.deepEqual(upstream.body, { ...body, model: 'claude-sonnet-4-5-20250929', stream: true });
      // Only the allow-listed headers travel, never the client's key.
      assert.equal(upstream.headers['x-api-key'], UPSTREAM_KEY);
      assert.equal(upstream.headers['anthropic-version'], '2023-06-01');
      assert.equal(upstream.headers['anthropic-beta'], 'configured-1,interleaved-thinking-2025-05-14');
      assert.equal(upstream.headers['x-secret-header'], undefined);
      assert.equal(upstream.headers.authorization, undefined);
      const requestId = (await stream.withResponse()).response.headers.get('x-request-id') ?? '';
      const row = await s.usageRow(requestId);
      assert.equal(row.protocol, 'messages');
      assert.equal(row.provider, 'claude');
      assert.equal(row.prompt_tokens, 14);
      assert.equal(row.completion_tokens, 20);
    });

    it('countTokens is Anthropic’s own count: the client’s body and allow-listed headers, Colloquy’s key', async () => {
      // As https://docs.anthropic.com/en/api/messages-count-tokens documents it: POST /v1/messages/count_tokens
      // with x-api-key and anthropic-version, the Messages body without max_tokens, answering {input_tokens}.
      claude.handle((req, res) => {
        if (req.path !== '/v1/messages/count_tokens') return sendJson(res, 404, {});
        if (req.headers['x-api-key'] !== UPSTREAM_KEY || !req.headers['anthropic-version']) {
          return sendJson(res, 401, {
            type: 'error',
            error: { type: 'authentication_error', message: 'invalid x-api-key' },
          });
        }
        if (!Array.isArray(req.body.messages) || typeof req.body.model !== 'string') {
          return sendJson(res, 400, {
            type: 'error',
            error: { type: 'invalid_request_error', message: 'messages: Field required' },
          });
        }
        sendJson(res, 200, { input_tokens: 4242 });
      });
      const body = {
        model: 'claude-sonnet',
        system: 'Be brief.',
        thinking: { type: 'enabled' as const, budget_tokens: 1024 },
        tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 2 }, weather],
        messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
      } as unknown as Anthropic.MessageCountTokensParams;
      const counted = await client.messages.countTokens(body, {
        headers: { 'anthropic-beta': 'token-counting-2024-11-01', 'x-secret-header': 'nope' },
      });
      assert.deepEqual(counted, { input_tokens: 4242 });
      const upstream = claude.requests.at(-1)!;
      assert.equal(upstream.path, '/v1/messages/count_tokens');
      // The client's body, untouched but for the model (server tools and thinking included).
      assert.deepEqual(upstream.body, { ...body, model: 'claude-sonnet-4-5-20250929' });
      assert.equal(upstream.headers['x-api-key'], UPSTREAM_KEY);
      assert.equal(upstream.headers['anthropic-version'], '2023-06-01');
      assert.equal(upstream.headers['anthropic-beta'], 'configured-1,token-counting-2024-11-01');
      assert.equal(upstream.headers['x-secret-header'], undefined);
      assert.equal(upstream.headers.authorization, undefined);

      // The upstream's refusal of the request reaches the client as Anthropic's error class.
      claude.handle((_req, res) =>
        sendJson(res, 400, {
          type: 'error',
          error: { type: 'invalid_request_error', message: 'messages.0.content: empty' },
        }),
      );
      await assert.rejects(
        client.messages.countTokens({ model: 'claude-sonnet', messages: [{ role: 'user', content: 'x' }] }),
        (err) => err instanceof Anthropic.BadRequestError && /empty/.test(err.message),
      );
      // A model on an OpenAI-format upstream is estimated by Colloquy: nothing reaches the Anthropic one.
      const before = claude.requests.length;
      const estimate = await client.messages.countTokens({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Hi' }],
      });
      assert.ok(estimate.input_tokens > 0 && estimate.input_tokens < 100);
      assert.equal(claude.requests.length, before);
    });

    it('messages.create returns the upstream’s answer as it came', async () => {
      claude.handle((_req, res) => sendJson(res, 200, fixture('message-tool-use.json')));
      const message = await client.messages.create({
        model: 'claude-sonnet',
        max_tokens: 256,
        tools: [weather],
        messages: [{ role: 'user', content: 'Weather in SF?' }],
      });
      assert.deepEqual(message, JSON.parse(fixture('message-tool-use.json')));
    });

    it('what only Anthropic can serve (server tools, document URLs) passes through; elsewhere it is a 400', async () => {
      claude.handle((_req, res) => sendJson(res, 200, fixture('message-text.json')));
      const body = {
        max_tokens: 256,
        tools: [{ type: 'web_search_20250305', name: 'web_search', max_uses: 2 }, weather],
        messages: [
          {
            role: 'user',
            content: [
              { type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } },
              { type: 'text', text: 'Summarise, and check the news.' },
            ],
          },
        ],
      } as unknown as Anthropic.MessageCreateParamsNonStreaming;
      const message = await client.messages.create({ ...body, model: 'claude-sonnet' });
      assert.equal(message.type, 'message');
      assert.deepEqual(claude.requests.at(-1)!.body.tools, body.tools);
      await assert.rejects(
        client.messages.create({ ...body, model: 'gpt-4o-mini' }),
        (err) => err instanceof Anthropic.BadRequestError && /Anthropic model/.test(err.message),
      );
    });

    it('relays the upstream’s tool_use stream with its arguments split across events', async () => {
      claude.handle((_req, res) => sendSse(res, [fixture('stream-tool-use.sse')]));
      const raw = await (
        await post({
          model: 'claude-sonnet',
          max_tokens: 256,
          stream: true,
          messages: [{ role: 'user', content: 'Weather?' }],
        })
      ).text();
      const expected = fixture('stream-tool-use.sse');
      // Event for event, byte for byte (the upstream's own framing).
      assert.deepEqual(raw.split('\n\n').filter(Boolean), expected.split('\n\n').filter(Boolean));
    });
  });

  describe('faults of an Anthropic deployment', () => {
    it('an upstream error event mid-stream is relayed as an error event with its type; partial output recorded', async () => {
      claude.handle((_req, res) => sendSse(res, [fixture('stream-error.sse')]));
      const response = await post({
        model: 'claude-sonnet',
        max_tokens: 64,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const raw = await response.text();
      const names = eventNames(raw);
      assert.equal(names[0], 'message_start');
      assert.equal(names.at(-1), 'error');
      const error = JSON.parse(raw.trim().split('\n').at(-1)!.slice('data: '.length));
      assert.equal(error.error.type, 'overloaded_error');
      const row = await s.usageRow(response.headers.get('x-request-id') ?? '');
      assert.equal(row.status, 'partial');
    });

    it('a stream cut before message_stop ends with an error event instead of hanging', async () => {
      claude.handle((_req, res) => sendSse(res, [fixture('stream-truncated.sse')]));
      const response = await post({
        model: 'claude-sonnet',
        max_tokens: 64,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      });
      const names = eventNames(await response.text());
      assert.equal(names.at(-1), 'error');
      assert.ok(!names.includes('message_stop'));
      const row = await s.usageRow(response.headers.get('x-request-id') ?? '');
      assert.equal(row.status, 'partial');
      assert.ok(row.completion_tokens > 0, 'the partial output is counted');
    });

    it('an upstream HTTP error before the first byte is an Anthropic error of the same kind', async () => {
      claude.handle((_req, res) => sendJson(res, 400, fixture('error-invalid-request.json')));
      await assert.rejects(
        client.messages.create({
          model: 'claude-sonnet',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => err instanceof Anthropic.BadRequestError && err.status === 400,
      );
      claude.handle((_req, res) => sendJson(res, 529, fixture('error-overloaded.json')));
      await assert.rejects(
        client.messages.create({
          model: 'claude-sonnet',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => {
          assert.ok(err instanceof Anthropic.APIError);
          assert.equal(err.status, 529);
          assert.equal((err.error as { error: { type: string } }).error.type, 'overloaded_error');
          return true;
        },
      );
      // The upstream refusing Colloquy's own key is Colloquy's fault, never the client's 401.
      claude.handle((_req, res) => sendJson(res, 401, fixture('error-authentication.json')));
      await assert.rejects(
        client.messages.create({
          model: 'claude-sonnet',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => err instanceof Anthropic.InternalServerError && err.status === 500,
      );
    });
  });

  describe('errors in Anthropic’s shape, as the SDK’s classes', () => {
    it('AuthenticationError for a wrong key (x-api-key or Bearer)', async () => {
      const bad = new Anthropic({ baseURL: s.url, apiKey: 'ck-wrong', maxRetries: 0 });
      await assert.rejects(
        bad.messages.create({
          model: 'gpt-4o-mini',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => {
          assert.ok(err instanceof Anthropic.AuthenticationError, String(err));
          assert.equal(err.status, 401);
          assert.equal((err.error as { error: { type: string } }).error.type, 'authentication_error');
          return true;
        },
      );
    });

    it('NotFoundError for a model nothing routes, BadRequestError for an invalid body', async () => {
      await assert.rejects(
        client.messages.create({
          model: 'no-such-model',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => err instanceof Anthropic.NotFoundError && err.status === 404,
      );
      await assert.rejects(
        client.messages.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] } as never),
        (err) => {
          assert.ok(err instanceof Anthropic.BadRequestError, String(err));
          assert.equal((err.error as { error: { type: string } }).error.type, 'invalid_request_error');
          assert.match(err.message, /max_tokens/);
          return true;
        },
      );
    });

    it('RateLimitError for an upstream 429, overloaded (529) for an upstream 503', async () => {
      s.fake.queue({ kind: 'status', status: 429 });
      await assert.rejects(
        client.messages.create({
          model: 'gpt-4o-mini',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => err instanceof Anthropic.RateLimitError && err.status === 429,
      );
      s.fake.queue({ kind: 'status', status: 503 });
      await assert.rejects(
        client.messages.create({
          model: 'gpt-4o-mini',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => {
          assert.ok(err instanceof Anthropic.InternalServerError, String(err));
          assert.equal(err.status, 529);
          assert.equal((err.error as { error: { type: string } }).error.type, 'overloaded_error');
          return true;
        },
      );
    });

    for (const fault of [
      { kind: 'reset-after', chunks: 2 },
      { kind: 'malformed-chunk' },
      // Cut with neither a finish_reason nor [DONE] (a stream that finished but left out [DONE] is complete).
      { kind: 'no-done-unfinished' },
    ] as const) {
      it(`a ${fault.kind} mid-stream ends the stream with an error event; the partial output is recorded`, async () => {
        s.fake.queue(fault);
        const response = await post({
          model: 'gpt-4o-mini',
          max_tokens: 64,
          stream: true,
          messages: [{ role: 'user', content: 'hi' }],
        });
        assert.equal(response.status, 200);
        const raw = await response.text();
        const names = eventNames(raw);
        assert.equal(names.at(-1), 'error', raw);
        assert.ok(!names.includes('message_stop'));
        const error = JSON.parse(raw.trim().split('\n').at(-1)!.slice('data: '.length));
        assert.equal(error.type, 'error');
        assert.equal(typeof error.error.message, 'string');
        const row = await s.usageRow(response.headers.get('x-request-id') ?? '');
        assert.equal(row.status, 'partial');
        assert.equal(row.protocol, 'messages');
        assert.ok(row.completion_tokens > 0, 'the partial output is counted');

        // The SDK sees the failure as an error, not a hang.
        s.fake.queue(fault);
        await assert.rejects(
          client.messages
            .stream({ model: 'gpt-4o-mini', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] })
            .finalMessage(),
          (err) => err instanceof Anthropic.AnthropicError,
        );
      });
    }
  });

  it('the OpenAPI document lists both endpoints, their x-api-key auth and Anthropic’s error shape', async () => {
    const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, { post?: { security?: unknown; responses?: Record<string, unknown> } }>;
      components: { securitySchemes: Record<string, { type: string; name?: string }> };
    };
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const post = doc.paths[path]?.post;
      assert.ok(post, `${path} listed`);
      assert.deepEqual(post.security, [{ apiKeyHeader: [] }, { bearerAuth: [] }]);
      assert.match(JSON.stringify(post.responses?.['401']), /authentication_error|AnthropicError|"error"/);
    }
    assert.deepEqual(doc.components.securitySchemes.apiKeyHeader, {
      type: 'apiKey',
      in: 'header',
      name: 'x-api-key',
      description: 'A Colloquy API key (ck-…), as Anthropic clients send it (Messages API)',
    });
  });

  it('the Claude Code recipe: ANTHROPIC_BASE_URL + ANTHROPIC_AUTH_TOKEN (a Bearer Colloquy key) and an alias', async () => {
    // Claude Code's settings become the SDK's baseURL and authToken (sent as Authorization: Bearer).
    const claudeCode = new Anthropic({ baseURL: s.url, authToken: s.apiKey, apiKey: null, maxRetries: 0 });
    claude.handle((_req, res) => sendJson(res, 200, fixture('message-text.json')));
    const message = await claudeCode.messages.create({
      model: 'claude-sonnet',
      max_tokens: 32,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(message.type, 'message');
    assert.equal(claude.requests.at(-1)!.body.model, 'claude-sonnet-4-5-20250929');
  });
});

describe('countTokens under input guardrails', () => {
  let s: ChatStack;
  let claude: ScriptedUpstream;
  before(async () => {
    claude = await startScriptedUpstream();
    claude.handle((_req, res) => sendJson(res, 200, { input_tokens: 4242 }));
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0' },
      routing: () => ({
        providers: [{ name: 'claude', type: 'anthropic', base_url: claude.url }],
        models: [
          {
            name: 'claude-sonnet',
            deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }],
          },
        ],
        guardrails: [{ name: 'pii', check: 'pii', stage: 'input', action: 'redact' }],
      }),
    });
  });
  after(async () => {
    await s?.close();
    await claude?.close();
  });

  it('counts locally: a prompt the guardrails would redact is never sent upstream to be counted', async () => {
    const client = new Anthropic({ baseURL: s.url, apiKey: s.apiKey, maxRetries: 0 });
    const counted = await client.messages.countTokens({
      model: 'claude-sonnet',
      messages: [{ role: 'user', content: 'Mail me at jane.doe@example.com' }],
    });
    assert.ok(counted.input_tokens > 0 && counted.input_tokens !== 4242);
    assert.equal(claude.requests.length, 0);
  });
});
