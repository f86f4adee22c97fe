import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A tiny upstream whose every answer the test writes: for wire formats the general fake upstream does not
 * produce (Anthropic's Messages API, OpenAI chunks split at chosen places). Requests are recorded. A test that
 * scripts it names the vendor page its answers follow.
 */
export interface ScriptedUpstream {
  url: string;
  requests: { path: string; headers: http.IncomingHttpHeaders; body: Record<string, unknown> }[];
  /** Answers the next requests (the last one set keeps answering). */
  handle(handler: (req: ScriptedRequest, res: http.ServerResponse) => void | Promise<void>): void;
  close(): Promise<void>;
}

export interface ScriptedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
}

export async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  let handler: (req: ScriptedRequest, res: http.ServerResponse) => void | Promise<void> = (_req, res) => {
    res.writeHead(500).end();
  };
  const requests: ScriptedUpstream['requests'] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const request = {
      path: req.url ?? '',
      headers: req.headers,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    };
    requests.push(request);
    await handler(request, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    handle: (h) => {
      handler = h;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers = {}) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

/** Server-sent events, written as given (each already framed), then the end of the response. */
export function sendSse(res: http.ServerResponse, events: string[], end: 'end' | 'destroy' = 'end') {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  for (const event of events) res.write(event);
  if (end === 'destroy') setTimeout(() => res.destroy(), 20);
  else res.end();
}
