import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { ProviderError } from '../../src/providers/errors.js';
import type { ChatGateway, GatewayRequest } from '../../src/providers/router/types.js';
import { bearer, startTestApp, TEST_MASTER_KEY } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';

/**
 * What a client sees while a replica shuts down (issue 19, item 8): a request arriving on a connection still
 * open once the listener has closed is served (closing its connection: a proxy never replays a POST it sent, so
 * a refusal would reach its client), readiness names `lifecycle`, and a /v1 stream cut before its first token
 * gets a retryable 503 in Colloquy's error shape.
 */

/** A raw keep-alive connection whose first request stays in flight (its body held back) until `release`. */
async function heldConnection(url: string) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let received = '';
  socket.on('data', (d) => {
    received += d;
  });
  const ended = new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
  });
  socket.write(
    'POST /api/auth/login HTTP/1.1\r\nhost: colloquy\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n',
  );
  return {
    destroy: () => socket.destroy(),
    /** Sends the held body, then `next` pipelined on the same connection; resolves with everything received. */
    async release(next: string) {
      socket.write(`{}${next}`);
      const timer = setTimeout(() => socket.destroy(), 10_000);
      await ended;
      clearTimeout(timer);
      return received;
    },
  };
}

/** The responses of a pipelined exchange: status, headers (lower-cased) and body of each, in order. */
function responses(raw: string) {
  const out: { status: number; headers: Record<string, string>; body: string }[] = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1 ')) {
    const headEnd = rest.indexOf('\r\n\r\n');
    const [statusLine, ...lines] = rest.slice(0, headEnd).split('\r\n');
    const headers = Object.fromEntries(
      lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
    );
    const length = Number(headers['content-length'] ?? 0);
    const body = rest.slice(headEnd + 4, headEnd + 4 + length);
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, body });
    rest = rest.slice(headEnd + 4 + length);
  }
  return out;
}

async function inFlight(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^colloquy_http_requests_in_flight(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 0);
}

describe('shutdown drain', () => {
  it('requests arriving on open connections while the server closes are served, closing them; readiness names lifecycle', async () => {
    let draining = false;
    const t = await startTestApp({ isDraining: () => draining });
    const held: { destroy(): void }[] = [];
    try {
      const url = await t.listen();
      const first = await heldConnection(url);
      const second = await heldConnection(url);
      held.push(first, second);
      await eventually(async () => (await inFlight(url)) === 2, 10_000, 'both requests are in flight');

      // SHUTDOWN_DELAY=0: draining and closing begin together (server.ts).
      draining = true;
      const closed = t.app.close();
      const [api, ready] = await Promise.all([
        first.release(
          `GET /v1/models HTTP/1.1\r\nhost: colloquy\r\nauthorization: Bearer ${TEST_MASTER_KEY}\r\n\r\n`,
        ),
        second.release('GET /health/ready HTTP/1.1\r\nhost: colloquy\r\n\r\n'),
      ]);
      await closed;

      const [, served] = responses(api);
      assert.ok(served, `a second response on the connection:\n${api}`);
      assert.equal(served.status, 200, api);
      assert.equal(served.headers.connection, 'close');
      const models = JSON.parse(served.body) as { data: { id: string }[] };
      assert.ok(
        models.data.some((m) => m.id === 'demo'),
        served.body,
      );

      const [, readiness] = responses(ready);
      assert.ok(readiness, `a second response on the connection:\n${ready}`);
      assert.equal(readiness.status, 503, ready);
      const report = JSON.parse(readiness.body) as { failing: string[]; checks: { lifecycle: unknown } };
      assert.ok(report.failing.includes('lifecycle'), readiness.body);
      assert.deepEqual(report.checks.lifecycle, { status: 'fail', detail: 'shutting down' });
    } finally {
      for (const connection of held) connection.destroy();
      await t.close();
    }
  });

  it('a /v1 stream still waiting for its first token when the drain ends gets a 503 it may retry, not 499', async () => {
    let called!: () => void;
    const reached = new Promise<void>((resolve) => {
      called = resolve;
    });
    // Like the router before the upstream's first token: stream() resolves only once the first chunk arrives.
    const gateway: ChatGateway = {
      complete: () => Promise.reject(new Error('not used')),
      stream: (request: GatewayRequest) =>
        new Promise((_resolve, reject) => {
          called();
          request.signal?.addEventListener('abort', () =>
            reject(
              new ProviderError('request cancelled', {
                provider: 'test',
                status: 499,
                code: 'cancelled',
                retryable: false,
                kind: 'cancelled',
              }),
            ),
          );
        }),
      listModels: async () => [{ id: 'slow', owned_by: 'test' }],
      hasModel: () => true,
    };
    const t = await startTestApp({ gateway });
    try {
      const url = await t.listen();
      const pending = fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
        body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      await reached;
      t.app.endOpenStreams(); // what server.ts does when SHUTDOWN_TIMEOUT is over
      const res = await pending;
      assert.equal(res.status, 503);
      assert.ok(Number(res.headers.get('retry-after')) > 0, 'Retry-After');
      const body = (await res.json()) as { error: { code: string; type: string } };
      assert.equal(body.error.code, 'service_unavailable');
      assert.equal(body.error.type, 'server_error');
    } finally {
      await t.close();
    }
  });
});
