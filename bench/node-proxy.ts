/**
 * The ceiling arm: the thinnest Node.js HTTP proxy there is, in a process of its own. `http.createServer`
 * reads the POST body, sends it to the upstream through an undici Agent configured exactly like Colloquy's
 * (src/providers/http.ts) and pipes the answer back, streams included. No auth, database, logging,
 * validation or metrics: whatever a Node.js gateway does, it cannot be cheaper than this on the same
 * machine. Prints one JSON line `{"url","pid"}` once listening, then serves until SIGTERM.
 *
 *   node --import tsx bench/node-proxy.ts --upstream http://127.0.0.1:1234 --api-key sk-… [--port 0]
 */
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    upstream: { type: 'string' },
    'api-key': { type: 'string', default: '' },
  },
});
if (!values.upstream) throw new Error('--upstream <origin> is required');
const upstream = values.upstream.replace(/\/+$/, '');
const authorization = `Bearer ${values['api-key']}`;

// The same keep-alive pool settings as Colloquy's provider client.
const agent = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, pipelining: 1 });

async function forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const upstreamRes = await request(`${upstream}${req.url}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization },
    body: Buffer.concat(chunks),
    dispatcher: agent,
  });
  const contentType = upstreamRes.headers['content-type'];
  res.writeHead(upstreamRes.statusCode, contentType ? { 'content-type': contentType } : {});
  await pipeline(upstreamRes.body, res);
}

const server = http.createServer((req, res) => {
  forward(req, res).catch((err: Error) => {
    // Mid-stream, the client can only be told by a cut connection.
    if (res.headersSent) return void res.destroy(err);
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: err.message, code: 'upstream_error' } }));
  });
});
server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: process.pid })}\n`);
});
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
