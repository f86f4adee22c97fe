/**
 * The ceiling arm: the thinnest proxy on Colloquy's own HTTP stack, in a process of its own. Node's
 * `http.createServer` reads the POST body and sends it to the upstream through an undici Agent configured
 * exactly like Colloquy's (src/providers/http.ts), on undici's dispatch handler as Colloquy's client is (no
 * Readable streams, no `pipeline`); the answer is written back as its chunks arrive, streams included. No
 * auth, database, logging, validation or metrics: whatever a gateway built on node:http and undici does, it
 * cannot be cheaper than this on the same machine. Prints one JSON line `{"url","pid"}` once listening, then
 * serves until SIGTERM.
 *
 *   node --import tsx bench/node-proxy.ts --upstream http://127.0.0.1:1234 --api-key sk-… [--port 0]
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Agent, type Dispatcher } from 'undici';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    upstream: { type: 'string' },
    'api-key': { type: 'string', default: '' },
  },
});
if (!values.upstream) throw new Error('--upstream <origin> is required');
const origin = values.upstream.replace(/\/+$/, '');
const authorization = `Bearer ${values['api-key']}`;

// The same keep-alive pool settings as Colloquy's provider client.
const agent = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, pipelining: 1 });

function forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  let abort: ((reason: Error) => void) | undefined;
  res.once('close', () => {
    if (!res.writableFinished) abort?.(new Error('client gone'));
  });
  agent.dispatch(
    {
      origin,
      path: req.url ?? '/',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body,
    },
    {
      onConnect(abortCall: (reason: Error) => void) {
        abort = abortCall;
      },
      onHeaders(status: number, rawHeaders: Buffer[], resume: () => void) {
        if (status < 200) return true;
        // The upstream's content type and length (a length spares the client chunked framing).
        const kept: Record<string, string> = {};
        for (let i = 0; i < rawHeaders.length; i += 2) {
          const name = rawHeaders[i]!.toString('latin1').toLowerCase();
          if (name === 'content-type' || name === 'content-length')
            kept[name] = rawHeaders[i + 1]!.toString('latin1');
        }
        res.writeHead(status, kept);
        res.on('drain', resume);
        return true;
      },
      // false pauses the upstream until the client has taken what it was sent.
      onData: (chunk: Buffer) => res.write(chunk),
      onComplete: () => void res.end(),
      onError(err: Error) {
        // Mid-stream, the client can only be told by a cut connection.
        if (res.headersSent) return void res.destroy(err);
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: err.message, code: 'upstream_error' } }));
      },
    } as unknown as Dispatcher.DispatchHandler,
  );
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => forward(req, res, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
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
