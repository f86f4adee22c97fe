import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest, StreamEvent } from '../types.js';
import { AnthropicProvider } from './provider.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

const API_KEY = 'sk-ant-api03-test-key';

function callOptions(overrides: Partial<CallOptions['timeouts']> = {}, signal?: AbortSignal): CallOptions {
  return {
    signal: signal ?? new AbortController().signal,
    requestId: 'req_test',
    timeouts: { connectMs: 2000, firstTokenMs: 5000, idleMs: 5000, totalMs: 30000, ...overrides },
  };
}

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown> | null;
}

type Handler = (req: Received, res: http.ServerResponse) => Promise<void> | void;

/** Odd sizes, so SSE lines, `data:` prefixes and multi-byte UTF-8 characters are cut across writes. */
const ODD_SIZES = [1, 7, 3, 13, 2, 29, 5, 61, 11, 4];

/** Replays a recorded SSE stream: whole, or in odd byte slices written one event-loop turn apart. */
async function replaySse(
  res: http.ServerResponse,
  text: string,
  options: { split?: boolean; end?: 'end' | 'destroy' } = {},
) {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'request-id': 'req_011CUbvE5XWbYpHzRLq8MuQ2',
  });
  const bytes = Buffer.from(text, 'utf8');
  if (!options.split) res.write(bytes);
  else {
    let offset = 0;
    for (let i = 0; offset < bytes.length; i++) {
      const size = ODD_SIZES[i % ODD_SIZES.length]!;
      res.write(bytes.subarray(offset, offset + size));
      offset += size;
      await sleep(1);
    }
  }
  if (options.end === 'destroy') {
    await sleep(20); // let what was written reach the client first
    res.destroy();
  } else res.end();
}

function replayJson(
  res: http.ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_011CUbw', ...headers });
  res.end(body);
}

let server: http.Server;
let baseUrl: string;
let handler: Handler;
const received: Received[] = [];

before(async () => {
  server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const entry: Received = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : null,
    };
    received.push(entry);
    try {
      await handler(entry, res);
    } catch {
      res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  received.length = 0;
  handler = (_req, res) => replayJson(res, 500, '{}');
});

const provider = () => new AnthropicProvider({ name: 'claude', apiKey: API_KEY, baseUrl });

const request = (extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: 'claude-sonnet-4-5-20250929',
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is the weather in San Francisco and Zürich?' },
  ],
  ...extra,
});

async function collect(stream: AsyncIterable<StreamEvent>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const event of stream) chunks.push(event.chunk);
  return chunks;
}

/** Drains a stream, returning the chunks received before it failed and the error. */
async function collectUntilError(stream: AsyncIterable<StreamEvent>) {
  const chunks: ChatCompletionChunk[] = [];
  try {
    for await (const event of stream) chunks.push(event.chunk);
  } catch (err) {
    return { chunks, error: err };
  }
  assert.fail('the stream should have failed');
}

const text = (chunks: ChatCompletionChunk[]) => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

function assertProviderError(
  err: unknown,
  expected: { status: number; code: string; retryable: boolean; upstreamStatus?: number; kind?: string },
): asserts err is ProviderError {
  assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
  assert.equal(err.details.provider, 'claude');
  assert.equal(err.details.status, expected.status);
  assert.equal(err.details.code, expected.code);
  assert.equal(err.retryable, expected.retryable);
  if (expected.upstreamStatus !== undefined)
    assert.equal(err.details.upstreamStatus, expected.upstreamStatus);
  if (expected.kind !== undefined) assert.equal(err.details.kind, expected.kind);
}

const TOOLS: ChatCompletionRequest['tools'] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather in a given location',
      parameters: {
        type: 'object',
        properties: {
          location: { type: 'string' },
          unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        },
        required: ['location'],
      },
    },
  },
];

describe('AnthropicProvider.complete', () => {
  it('posts the translated request with Anthropic headers and translates the recorded answer', async () => {
    handler = (_req, res) => replayJson(res, 200, fixture('message-text.json'));
    const completion = await provider().complete(
      request({
        max_tokens: 300,
        temperature: 0.5,
        stop: ['\n\nHuman:'],
        user: 'user-7',
        stream_options: { include_usage: true },
      }),
      callOptions(),
    );

    assert.equal(received.length, 1);
    const sent = received[0]!;
    assert.equal(sent.method, 'POST');
    assert.equal(sent.url, '/v1/messages');
    assert.equal(sent.headers['x-api-key'], API_KEY);
    assert.equal(sent.headers['anthropic-version'], '2023-06-01');
    assert.match(String(sent.headers['content-type']), /^application\/json/);
    assert.equal(sent.headers.authorization, undefined);
    assert.deepEqual(sent.body, {
      model: 'claude-sonnet-4-5-20250929',
      system: 'You are a helpful assistant.',
      messages: [{ role: 'user', content: 'What is the weather in San Francisco and Zürich?' }],
      max_tokens: 300,
      temperature: 0.5,
      stop_sequences: ['\n\nHuman:'],
      metadata: { user_id: 'user-7' },
    });

    assert.equal(completion.id, 'msg_01XFDUDYJgAACzvnptvVoYEL');
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.model, 'claude-sonnet-4-5-20250929');
    assert.equal(completion.choices[0]!.message.content, 'Paris is the capital of France.');
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assert.deepEqual(completion.usage, { prompt_tokens: 24, completion_tokens: 10, total_tokens: 34 });
  });

  it('translates a recorded tool-use answer and sends tools with tool_choice', async () => {
    handler = (_req, res) => replayJson(res, 200, fixture('message-tool-use.json'));
    const completion = await provider().complete(
      request({ tools: TOOLS, tool_choice: 'required' }),
      callOptions(),
    );
    const body = received[0]!.body!;
    assert.equal(body.max_tokens, 4096);
    assert.deepEqual(body.tool_choice, { type: 'any' });
    assert.deepEqual(body.tools, [
      {
        name: 'get_weather',
        description: 'Get the current weather in a given location',
        input_schema: TOOLS![0]!.function.parameters,
      },
    ]);
    const choice = completion.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.deepEqual(choice.message.tool_calls, [
      {
        id: 'toolu_01A09q90qw90lq917835lq9',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA","unit":"celsius"}' },
      },
    ]);
    assert.deepEqual(completion.usage, { prompt_tokens: 1584, completion_tokens: 72, total_tokens: 1656 });
  });

  it('tolerates a base URL ending in /v1 and sends a configured version', async () => {
    handler = (_req, res) => replayJson(res, 200, fixture('message-text.json'));
    const p = new AnthropicProvider({ apiKey: API_KEY, baseUrl: `${baseUrl}/v1/`, version: '2024-01-01' });
    assert.equal(p.name, 'anthropic');
    assert.equal(p.kind, 'anthropic');
    await p.complete(request(), callOptions());
    assert.equal(received[0]!.url, '/v1/messages');
    assert.equal(received[0]!.headers['anthropic-version'], '2024-01-01');
  });

  it('reports a 200 answer that is not JSON, or is an error body, as a ProviderError', async () => {
    handler = (_req, res) => replayJson(res, 200, '<html>gateway</html>');
    await assert.rejects(provider().complete(request(), callOptions()), (err) => {
      assertProviderError(err, {
        status: 502,
        code: 'upstream_bad_response',
        retryable: true,
        kind: 'protocol',
      });
      return true;
    });
    handler = (_req, res) => replayJson(res, 200, fixture('error-overloaded.json'));
    await assert.rejects(provider().complete(request(), callOptions()), (err) => {
      assertProviderError(err, { status: 502, code: 'overloaded_error', retryable: true });
      return true;
    });
  });
});

describe('AnthropicProvider.stream', () => {
  for (const split of [false, true]) {
    it(`streams recorded text${split ? ' split into odd byte chunks' : ''}: role, deltas, finish reason, usage`, async () => {
      handler = (_req, res) => replaySse(res, fixture('stream-text.sse'), { split });
      const chunks = await collect(await provider().stream(request({ stream: true }), callOptions()));

      const sent = received[0]!;
      assert.equal(sent.url, '/v1/messages');
      assert.equal(sent.headers['x-api-key'], API_KEY);
      assert.equal(sent.headers['anthropic-version'], '2023-06-01');
      assert.equal(sent.headers.accept, 'text/event-stream');
      assert.equal(sent.body!.stream, true);
      assert.equal(sent.body!.system, 'You are a helpful assistant.');
      assert.equal('stream_options' in sent.body!, false);

      assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
      assert.equal(chunks[0]!.id, 'msg_01QC4g3HwBThD4BaNtBckFDJ');
      assert.equal(chunks[0]!.model, 'claude-sonnet-4-5-20250929');
      assert.equal(
        text(chunks),
        "Bonjour ! Un café ☕ et un croissant 🥐, s'il vous plaît.\nÇa fait 4,50 €.",
      );
      assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason).length, 1);
      assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'stop');
      assert.deepEqual(chunks.at(-1)!.choices, []);
      assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 21, completion_tokens: 27, total_tokens: 48 });
    });
  }

  it('streams recorded tool use as OpenAI tool call deltas', async () => {
    handler = (_req, res) => replaySse(res, fixture('stream-tool-use.sse'), { split: true });
    const chunks = await collect(
      await provider().stream(
        request({
          stream: true,
          tools: TOOLS,
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
        }),
        callOptions(),
      ),
    );
    assert.deepEqual(received[0]!.body!.tool_choice, { type: 'tool', name: 'get_weather' });

    assert.equal(text(chunks), "I'll check the weather in both cities for you.");
    const calls: { id?: string; name?: string; arguments: string }[] = [];
    for (const chunk of chunks) {
      for (const call of chunk.choices[0]?.delta.tool_calls ?? []) {
        calls[call.index] ??= { arguments: '' };
        const entry = calls[call.index]!;
        if (call.id) entry.id = call.id;
        if (call.function?.name) entry.name = call.function.name;
        entry.arguments += call.function?.arguments ?? '';
      }
    }
    assert.deepEqual(
      calls.map((c) => ({ ...c, arguments: JSON.parse(c.arguments) })),
      [
        {
          id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          name: 'get_weather',
          arguments: { location: 'San Francisco, CA', unit: 'fahrenheit' },
        },
        {
          id: 'toolu_01EjLPxF2ZfKfJ5rRSVxmsGa',
          name: 'get_weather',
          arguments: { location: 'Zürich, CH', unit: 'celsius' },
        },
      ],
    );
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)!.usage, {
      prompt_tokens: 1496,
      completion_tokens: 89,
      total_tokens: 1585,
    });
  });

  it('streams a recorded max_tokens stop as finish_reason length, skipping thinking', async () => {
    handler = (_req, res) => replaySse(res, fixture('stream-max-tokens.sse'), { split: true });
    const chunks = await collect(await provider().stream(request({ max_tokens: 20 }), callOptions()));
    assert.equal(received[0]!.body!.max_tokens, 20);
    assert.equal(text(chunks), 'One, two, three, four');
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'length');
    assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 14, completion_tokens: 20, total_tokens: 34 });
  });

  it('fails with a retryable ProviderError on a recorded error event mid-stream', async () => {
    handler = (_req, res) => replaySse(res, fixture('stream-error.sse'), { split: true });
    const { chunks, error } = await collectUntilError(await provider().stream(request(), callOptions()));
    assert.equal(text(chunks), 'The answer');
    assertProviderError(error, { status: 502, code: 'overloaded_error', retryable: true, kind: 'upstream' });
    assert.match(error.message, /Overloaded/);
  });

  it('fails before the first chunk when the upstream errors right after message_start', async () => {
    const recorded = fixture('stream-error.sse').split('\n\n');
    const start = recorded.find((e) => e.startsWith('event: message_start'))!;
    const error = recorded.find((e) => e.startsWith('event: error'))!;
    handler = (_req, res) =>
      replaySse(res, `${start}\n\nevent: ping\ndata: {"type": "ping"}\n\n${error}\n\n`);
    const iterator = (await provider().stream(request(), callOptions()))[Symbol.asyncIterator]();
    // The gateway counts the first chunk as part of the attempt, so this failure can still be retried.
    await assert.rejects(iterator.next(), (err) => {
      assertProviderError(err, { status: 502, code: 'overloaded_error', retryable: true });
      return true;
    });
  });

  it('fails with a protocol error when the stream ends without message_stop', async () => {
    handler = (_req, res) => replaySse(res, fixture('stream-truncated.sse'), { split: true });
    const { chunks, error } = await collectUntilError(await provider().stream(request(), callOptions()));
    assert.equal(text(chunks), "Bonjour ! Un café ☕ et un croissant 🥐, s'il vous plaît.\nÇa fait 4,50 €.");
    assertProviderError(error, {
      status: 502,
      code: 'upstream_bad_response',
      retryable: true,
      kind: 'protocol',
    });
    assert.match(error.message, /message_stop/);
  });

  it('fails with a protocol error when the stream is cut in the middle of an event', async () => {
    const full = fixture('stream-text.sse');
    handler = (_req, res) => replaySse(res, full.slice(0, full.indexOf('"end_turn"')), { split: true });
    const { error } = await collectUntilError(await provider().stream(request(), callOptions()));
    assertProviderError(error, { status: 502, code: 'upstream_bad_response', retryable: true });
  });

  it('fails with a retryable ProviderError when the connection is reset mid-stream', async () => {
    const full = fixture('stream-text.sse');
    handler = (_req, res) =>
      replaySse(res, full.slice(0, full.indexOf('event: message_delta')), { end: 'destroy' });
    const { chunks, error } = await collectUntilError(await provider().stream(request(), callOptions()));
    assert.equal(text(chunks), "Bonjour ! Un café ☕ et un croissant 🥐, s'il vous plaît.\nÇa fait 4,50 €.");
    assertProviderError(error, {
      status: 502,
      code: 'upstream_unreachable',
      retryable: true,
      kind: 'connection',
    });
  });

  it('times out a stream that stalls longer than idleMs', async () => {
    const full = fixture('stream-text.sse');
    handler = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(full.slice(0, full.indexOf('event: content_block_delta')));
      await sleep(1_000);
      res.end();
    };
    const { error } = await collectUntilError(
      await provider().stream(request(), callOptions({ idleMs: 100 })),
    );
    assertProviderError(error, { status: 504, code: 'upstream_timeout', retryable: true, kind: 'timeout' });
  });

  it('stops with a cancelled error when the caller aborts mid-stream', async () => {
    const full = fixture('stream-text.sse');
    handler = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(full.slice(0, full.indexOf('event: content_block_delta', full.indexOf('Bonjour'))));
      await sleep(1_000);
      res.end();
    };
    const controller = new AbortController();
    const stream = await provider().stream(request(), callOptions({}, controller.signal));
    const chunks: ChatCompletionChunk[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of stream) {
          chunks.push(event.chunk);
          controller.abort();
        }
      })(),
      (err) => {
        assertProviderError(err, { status: 499, code: 'cancelled', retryable: false, kind: 'cancelled' });
        return true;
      },
    );
    assert.equal(text(chunks), 'Bonjour');
  });
});

describe('AnthropicProvider upstream HTTP errors', () => {
  const both = [
    ['complete', (body: ChatCompletionRequest) => provider().complete(body, callOptions())],
    ['stream', (body: ChatCompletionRequest) => provider().stream(body, callOptions())],
  ] as const;

  for (const [method, call] of both) {
    it(`${method}: 429 with retry-after is retryable and carries retryAfterMs`, async () => {
      handler = (_req, res) =>
        replayJson(res, 429, fixture('error-rate-limit.json'), {
          'retry-after': '7',
          'anthropic-ratelimit-input-tokens-limit': '30000',
          'anthropic-ratelimit-input-tokens-remaining': '0',
        });
      await assert.rejects(call(request()), (err) => {
        assertProviderError(err, {
          status: 429,
          code: 'upstream_rate_limited',
          retryable: true,
          upstreamStatus: 429,
        });
        assert.equal(err.details.retryAfterMs, 7000);
        assert.match(err.message, /exceed the rate limit/);
        return true;
      });
    });

    it(`${method}: 400 is not retryable and keeps the upstream message`, async () => {
      handler = (_req, res) => replayJson(res, 400, fixture('error-invalid-request.json'));
      await assert.rejects(call(request({ max_tokens: 300_000 })), (err) => {
        assertProviderError(err, {
          status: 400,
          code: 'upstream_invalid_request',
          retryable: false,
          upstreamStatus: 400,
        });
        assert.equal(
          err.message,
          'max_tokens: 300000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929',
        );
        assert.equal(err.details.type, 'invalid_request_error');
        return true;
      });
    });

    it(`${method}: 529 overloaded is a retryable 503`, async () => {
      handler = (_req, res) => replayJson(res, 529, fixture('error-overloaded.json'));
      await assert.rejects(call(request()), (err) => {
        assertProviderError(err, {
          status: 503,
          code: 'upstream_overloaded',
          retryable: true,
          upstreamStatus: 529,
        });
        assert.match(err.message, /overloaded: Overloaded/);
        return true;
      });
    });
  }

  it('404 for an unknown model is model_not_found naming the model', async () => {
    handler = (_req, res) => replayJson(res, 404, fixture('error-not-found-model.json'));
    await assert.rejects(
      provider().complete(request({ model: 'claude-sonnet-9-nonexistent' }), callOptions()),
      (err) => {
        assertProviderError(err, {
          status: 404,
          code: 'model_not_found',
          retryable: false,
          upstreamStatus: 404,
        });
        assert.equal(err.details.param, 'model');
        assert.match(err.message, /`claude-sonnet-9-nonexistent` does not exist/);
        return true;
      },
    );
  });

  it('401 for the configured key is a 502, not the client’s 401', async () => {
    handler = (_req, res) => replayJson(res, 401, fixture('error-authentication.json'));
    await assert.rejects(provider().stream(request(), callOptions()), (err) => {
      assertProviderError(err, {
        status: 502,
        code: 'upstream_auth_failed',
        retryable: false,
        upstreamStatus: 401,
      });
      assert.match(err.message, /invalid x-api-key/);
      return true;
    });
  });

  it('a 5xx from a proxy without an Anthropic body is retryable', async () => {
    handler = (_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><body>502 Bad Gateway</body></html>');
    };
    await assert.rejects(provider().complete(request(), callOptions()), (err) => {
      assertProviderError(err, { status: 502, code: 'upstream_error', retryable: true, upstreamStatus: 502 });
      return true;
    });
  });

  it('a request Anthropic cannot express is refused before any call', async () => {
    await assert.rejects(provider().stream(request({ n: 3 }), callOptions()), (err) => {
      assertProviderError(err, { status: 400, code: 'invalid_request', retryable: false });
      return true;
    });
    assert.equal(received.length, 0);
  });

  it('an unreachable upstream is a retryable connection error', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const p = new AnthropicProvider({ name: 'claude', apiKey: API_KEY, baseUrl: `http://127.0.0.1:${port}` });
    await assert.rejects(p.complete(request(), callOptions()), (err) => {
      assertProviderError(err, {
        status: 502,
        code: 'upstream_unreachable',
        retryable: true,
        kind: 'connection',
      });
      return true;
    });
  });
});

describe('AnthropicProvider.listModels', () => {
  it('lists model ids across pages with Anthropic headers', async () => {
    handler = (req, res) =>
      replayJson(
        res,
        200,
        fixture(req.url.includes('after_id=') ? 'models-page-2.json' : 'models-page-1.json'),
      );
    const ids = await provider().listModels({ signal: new AbortController().signal });
    assert.deepEqual(ids, [
      'claude-sonnet-4-5-20250929',
      'claude-opus-4-1-20250805',
      'claude-3-5-haiku-20241022',
    ]);
    assert.equal(received.length, 2);
    assert.equal(received[0]!.method, 'GET');
    assert.equal(received[0]!.url, '/v1/models?limit=1000');
    assert.equal(received[1]!.url, '/v1/models?limit=1000&after_id=claude-opus-4-1-20250805');
    for (const r of received) {
      assert.equal(r.headers['x-api-key'], API_KEY);
      assert.equal(r.headers['anthropic-version'], '2023-06-01');
    }
  });

  it('reports an upstream error instead of an empty list', async () => {
    handler = (_req, res) => replayJson(res, 401, fixture('error-authentication.json'));
    await assert.rejects(provider().listModels({ signal: new AbortController().signal }), (err) => {
      assertProviderError(err, { status: 502, code: 'upstream_auth_failed', retryable: false });
      return true;
    });
  });
});
