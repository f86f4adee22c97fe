import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small HTTP server for the cloud fakes: records every request (path, query, headers, parsed body) and hands
 * it to the vendor's handler. Listens on 127.0.0.1, port 0.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: Record<string, unknown>;
}

export interface FakeServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Handler = (req: RecordedRequest, res: http.ServerResponse) => void | Promise<void>;

export async function startServer(handler: Handler): Promise<FakeServer> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: Record<string, unknown> = {};
    try {
      body = text && req.headers['content-type']?.includes('json') ? JSON.parse(text) : {};
    } catch {
      body = {};
    }
    const url = new URL(req.url ?? '/', 'http://fake');
    const recorded = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      text,
      body,
    };
    requests.push(recorded);
    try {
      await handler(recorded, res);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: String(err) } }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const sendJson = (res: http.ServerResponse, status: number, body: unknown, headers = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

/** Server-sent events as OpenAI and its compatible servers frame them: `data: {json}\n\n`, then `data: [DONE]`. */
export function sendSse(res: http.ServerResponse, events: unknown[], done = true) {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const event of events) res.write(`data: ${JSON.stringify(event)}\n\n`);
  if (done) res.write('data: [DONE]\n\n');
  res.end();
}

export interface ToolCallSpec {
  id: string;
  name: string;
  arguments: string;
}

/** An OpenAI-format answer: text, or tool calls; `extra` adds vendor fields to the message and choice. */
export function completion(
  model: string,
  answer: { text?: string; toolCalls?: ToolCallSpec[]; finish?: string },
  extra: {
    message?: Record<string, unknown>;
    choice?: Record<string, unknown>;
    top?: Record<string, unknown>;
  } = {},
) {
  const toolCalls = answer.toolCalls?.map((c) => ({
    id: c.id,
    type: 'function',
    function: { name: c.name, arguments: c.arguments },
  }));
  return {
    id: 'chatcmpl-fake1',
    object: 'chat.completion',
    created: 1_700_000_000,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: answer.text ?? null,
          ...(toolCalls ? { tool_calls: toolCalls } : {}),
          ...extra.message,
        },
        finish_reason: answer.finish ?? (toolCalls ? 'tool_calls' : 'stop'),
        logprobs: null,
        ...extra.choice,
      },
    ],
    usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
    ...extra.top,
  };
}

/**
 * The same answer as stream chunks: text word by word; each tool call's arguments split in three pieces
 * across chunks (only the first chunk of a call carries its id and name), a final chunk with the finish
 * reason, and a usage chunk with no choices.
 */
export function streamChunks(
  model: string,
  answer: { text?: string; toolCalls?: ToolCallSpec[]; finish?: string },
  extra: { delta?: Record<string, unknown>; choice?: Record<string, unknown>; usage?: boolean } = {},
) {
  const base = { id: 'chatcmpl-fake1', object: 'chat.completion.chunk', created: 1_700_000_000, model };
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta, finish_reason: finish, logprobs: null, ...extra.choice }],
  });
  const chunks: unknown[] = [chunk({ role: 'assistant', content: '', ...extra.delta })];
  for (const word of (answer.text ?? '').split(/(?<= )/).filter(Boolean))
    chunks.push(chunk({ content: word }));
  for (const [index, call] of (answer.toolCalls ?? []).entries()) {
    const third = Math.ceil(call.arguments.length / 3);
    chunks.push(
      chunk({
        tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }],
      }),
    );
    for (let i = 0; i < call.arguments.length; i += third)
      chunks.push(
        chunk({ tool_calls: [{ index, function: { arguments: call.arguments.slice(i, i + third) } }] }),
      );
  }
  chunks.push(chunk({}, answer.finish ?? (answer.toolCalls?.length ? 'tool_calls' : 'stop')));
  if (extra.usage !== false)
    chunks.push({
      ...base,
      choices: [],
      usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
    });
  return chunks;
}
