import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A fake OpenAI-compatible upstream for tests and benchmarks: real HTTP, configurable pacing, and a queue
 * of scripted faults (one per request) to prove retries, fallbacks, breakers and stream failures.
 */
export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string; body?: unknown }
  | { kind: 'hang' } // accept the connection, never answer
  | { kind: 'not-json' } // a 200 whose body is an HTML error page (a proxy in the way)
  | { kind: 'slow-first-token'; delayMs: number }
  // Answer only once `until` settles: a request the test knows is in flight for as long as it needs.
  | { kind: 'held'; until: Promise<unknown> }
  | { kind: 'reset-after'; chunks: number } // destroy the socket mid-stream
  | { kind: 'no-done' } // end the stream without [DONE] (after the finish_reason and usage)
  | { kind: 'no-done-unfinished' } // end the stream without a finish_reason or [DONE]
  | { kind: 'malformed-chunk' }
  | { kind: 'error-event'; afterChunks: number }
  | { kind: 'drip'; intervalMs: number } // chunks slower than the idle timeout
  // A reply that does not end by itself: chunks of about 1 kB as fast as the reader takes them (waiting for
  // 'drain', as a real server does), until the reader leaves or `maxChunks` (then it ends normally: only a
  // reader that ignored backpressure could take 50,000, the kernel's socket buffers hold a few MB).
  | { kind: 'flood'; maxChunks: number };

export interface FakeUpstreamOptions {
  /** The reply, split into words and streamed `wordsPerChunk` at a time. */
  reply?: string;
  wordsPerChunk?: number;
  firstTokenDelayMs?: number;
  chunkIntervalMs?: number;
  /** Required bearer token (401 otherwise). */
  apiKey?: string;
  models?: string[];
  /**
   * Call this tool even when the request offers none (a model the provider configured with tools, as a
   * conversation's upstream may be): the reply is that call, streamed as OpenAI streams tool calls
   * (https://platform.openai.com/docs/api-reference/chat-streaming), finish_reason "tool_calls".
   */
  toolCall?: { name: string; arguments: string } | null;
  /** Streamed tool-call arguments are split into pieces of this many characters (default: one piece). */
  argumentsChunkChars?: number;
  /**
   * Reasoning before the answer, as DeepSeek's reasoner sends it (https://api-docs.deepseek.com/guides/reasoning_model):
   * `reasoning_content` beside `content` in the message, streamed word by word in its own deltas.
   */
  reasoning?: string;
}

export interface FakeUpstream {
  url: string;
  /** base URL for OpenAI clients: `${url}/v1` */
  baseUrl: string;
  /** Every request received: `text` is its body's bytes as they came (pass-through parity tests). */
  requests: {
    path: string;
    body: Record<string, unknown>;
    text: string;
    headers: http.IncomingHttpHeaders;
  }[];
  /** Faults applied to the next requests, in order; a request with none left is served normally. */
  queue(...faults: Fault[]): void;
  set(options: FakeUpstreamOptions): void;
  /** Open sockets right now (for leak checks). */
  openSockets(): number;
  /** Flooding replies waiting right now for their reader to take more (see the `flood` fault). */
  waitingForDrain(): number;
  close(): Promise<void>;
}

export async function startFakeUpstream(initial: FakeUpstreamOptions = {}, port = 0): Promise<FakeUpstream> {
  let options: Required<Omit<FakeUpstreamOptions, 'apiKey'>> & { apiKey?: string } = {
    reply: 'Hello from the fake upstream, streaming word by word.',
    wordsPerChunk: 1,
    firstTokenDelayMs: 0,
    chunkIntervalMs: 0,
    models: ['gpt-4o-mini', 'gpt-4o'],
    toolCall: null,
    argumentsChunkChars: 0,
    reasoning: '',
    ...initial,
  };
  const faults: Fault[] = [];
  const requests: FakeUpstream['requests'] = [];
  const sockets = new Set<import('node:net').Socket>();
  let waiting = 0;

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    requests.push({ path: req.url ?? '', body, text, headers: req.headers });

    if (options.apiKey && req.headers.authorization !== `Bearer ${options.apiKey}`) {
      return json(res, 401, {
        error: {
          message: 'Incorrect API key provided',
          type: 'invalid_request_error',
          code: 'invalid_api_key',
        },
      });
    }
    if (req.method === 'GET' && req.url === '/v1/models') {
      return json(res, 200, {
        object: 'list',
        data: options.models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake' })),
      });
    }
    if (req.method === 'POST' && req.url === '/v1/embeddings') {
      const fault = faults.shift();
      if (fault?.kind === 'status') {
        if (fault.retryAfter) res.setHeader('retry-after', fault.retryAfter);
        return json(res, fault.status, {
          error: { message: `injected ${fault.status}`, type: 'server_error' },
        });
      }
      return json(res, 200, fakeEmbeddings(body));
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions')
      return json(res, 404, { error: { message: 'not found' } });

    const model = String(body.model);
    if (!options.models.includes(model) && !model.startsWith('fake-')) {
      return json(res, 404, {
        error: {
          message: `The model \`${model}\` does not exist`,
          type: 'invalid_request_error',
          param: null,
          code: 'model_not_found',
        },
      });
    }
    const fault = faults.shift();
    if (fault?.kind === 'status') {
      if (fault.retryAfter) res.setHeader('retry-after', fault.retryAfter);
      return json(
        res,
        fault.status,
        fault.body ?? { error: { message: `injected ${fault.status}`, type: 'server_error', code: null } },
      );
    }
    if (fault?.kind === 'hang') return; // the socket stays open until the client gives up
    if (fault?.kind === 'not-json') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<html><body>502 Bad Gateway</body></html>');
    }

    const toolCall = options.toolCall
      ? { id: 'call_fake_1', type: 'function' as const, function: { ...options.toolCall } }
      : wantsToolCall(body);
    const words = options.reply.match(/\S+\s*/g) ?? [];
    const promptTokens = JSON.stringify(body.messages ?? []).length >> 2;
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: words.length,
      total_tokens: promptTokens + words.length,
    };
    const id = `chatcmpl-fake${requests.length}`;
    const created = Math.floor(Date.now() / 1000);

    if (fault?.kind === 'held') await fault.until.catch(() => undefined);
    if (!body.stream) {
      await sleep(options.firstTokenDelayMs + (fault?.kind === 'slow-first-token' ? fault.delayMs : 0));
      const message = toolCall
        ? { role: 'assistant', content: null, tool_calls: [toolCall] }
        : { role: 'assistant', content: options.reply, refusal: null };
      if (options.reasoning) Object.assign(message, { reasoning_content: options.reasoning });
      return json(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: toolCall ? 'tool_calls' : 'stop' }],
        usage,
        system_fingerprint: 'fp_fake',
      });
    }

    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    res.flushHeaders();
    const send = (payload: unknown) =>
      res.write(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`);
    const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      system_fingerprint: 'fp_fake',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    await sleep(options.firstTokenDelayMs + (fault?.kind === 'slow-first-token' ? fault.delayMs : 0));
    if (res.destroyed) return;
    send(chunk({ role: 'assistant', content: '', refusal: null }));
    let sent = 0;
    for (const word of options.reasoning.match(/\S+\s*/g) ?? []) send(chunk({ reasoning_content: word }));
    if (toolCall) {
      send(
        chunk({
          tool_calls: [
            {
              index: 0,
              id: toolCall.id,
              type: 'function',
              function: { name: toolCall.function.name, arguments: '' },
            },
          ],
        }),
      );
      const args = toolCall.function.arguments;
      const size = options.argumentsChunkChars || args.length || 1;
      for (let at = 0; at < Math.max(args.length, 1); at += size)
        send(chunk({ tool_calls: [{ index: 0, function: { arguments: args.slice(at, at + size) } }] }));
    } else if (fault?.kind === 'flood') {
      for (let i = 0; i < fault.maxChunks && !res.destroyed; i++) {
        if (send(chunk({ content: `word${i} `.repeat(100) }))) continue;
        waiting++;
        await drained(res);
        waiting--;
      }
      if (res.destroyed) return;
    } else {
      for (let i = 0; i < words.length; i += options.wordsPerChunk) {
        if (fault?.kind === 'reset-after' && sent === fault.chunks) {
          // Let the chunks already written reach the client first: destroy() drops unflushed data.
          await sleep(30);
          return res.socket?.destroy();
        }
        if (fault?.kind === 'error-event' && sent === fault.afterChunks) {
          send({
            error: { message: 'injected mid-stream failure', type: 'server_error', code: 'internal_error' },
          });
          return res.end();
        }
        if (fault?.kind === 'malformed-chunk' && sent === 1) send('{"id": "broken');
        const interval = fault?.kind === 'drip' ? fault.intervalMs : options.chunkIntervalMs;
        if (interval && i > 0) await sleep(interval);
        if (res.destroyed) return;
        send(chunk({ content: words.slice(i, i + options.wordsPerChunk).join('') }));
        sent++;
      }
    }
    if (fault?.kind === 'no-done-unfinished') return res.end();
    send(chunk({}, toolCall ? 'tool_calls' : 'stop'));
    const streamOptions = body.stream_options as { include_usage?: boolean } | undefined;
    if (streamOptions?.include_usage)
      send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
    if (fault?.kind === 'no-done') return res.end();
    res.end('data: [DONE]\n\n');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    baseUrl: `${url}/v1`,
    requests,
    queue: (...f) => faults.push(...f),
    set: (o) => {
      options = { ...options, ...o };
    },
    openSockets: () => sockets.size,
    waitingForDrain: () => waiting,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves when the response can take more, or is gone. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * OpenAI's embeddings answer (https://platform.openai.com/docs/api-reference/embeddings/create and
 * /embeddings/object): one `embedding` object per input, in order, as floats or (encoding_format base64)
 * the float32 little-endian bytes in base64, `dimensions` long (8 by default here), usage counting the input
 * tokens. The vectors are derived from each input's text, so equal inputs embed equally.
 */
export function fakeEmbeddings(body: Record<string, unknown>) {
  const input = body.input;
  const items: unknown[] =
    typeof input === 'string' || (Array.isArray(input) && typeof input[0] === 'number')
      ? [input]
      : (input as unknown[]);
  const dimensions = typeof body.dimensions === 'number' ? body.dimensions : 8;
  let promptTokens = 0;
  const data = items.map((item, index) => {
    const text = typeof item === 'string' ? item : JSON.stringify(item);
    promptTokens += Array.isArray(item) ? item.length : Math.max(1, text.split(/\s+/).length);
    const vector = Array.from({ length: dimensions }, (_, i) => {
      let h = 2166136261 ^ i;
      for (let c = 0; c < text.length; c++) h = Math.imul(h ^ text.charCodeAt(c), 16777619);
      return Math.fround(((h >>> 0) % 2000) / 1000 - 1);
    });
    const bytes = Buffer.alloc(vector.length * 4);
    for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i]!, i * 4);
    return {
      object: 'embedding',
      index,
      embedding: body.encoding_format === 'base64' ? bytes.toString('base64') : vector,
    };
  });
  return {
    object: 'list',
    data,
    model: String(body.model),
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

function json(res: http.ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A tool call when tools are offered and no tool result came back yet. */
function wantsToolCall(body: Record<string, unknown>) {
  const tools = body.tools as { function: { name: string } }[] | undefined;
  const messages = (body.messages ?? []) as { role: string }[];
  if (!tools?.length || body.tool_choice === 'none' || messages.some((m) => m.role === 'tool'))
    return undefined;
  return {
    id: 'call_fake_1',
    type: 'function' as const,
    function: { name: tools[0]!.function.name, arguments: '{"location":"Paris"}' },
  };
}
