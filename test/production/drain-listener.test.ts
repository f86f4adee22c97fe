import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';

/**
 * A replica SIGTERMed while a passive proxy (nginx, no take-out) still sends it traffic. nginx never replays a
 * POST it has sent, so whatever reaches the replica must be answered: after SHUTDOWN_DELAY the listener closes
 * at once — a new connection is refused, which nginx retries on another replica — even while conversation
 * generations still run (their drain used to hold it open, answering new connections 503); a request on a
 * connection already open is served with `Connection: close` (it used to get 503); and neither the idle sweep
 * nor the listener's close ends a connection accepted a moment ago whose first request has not been read yet
 * (Node counts it busy from its accept; nginx would see a reset: 502).
 */

/** Raw connections opened by the test, destroyed when it ends whatever happened. */
const opened: net.Socket[] = [];

/** A raw connection the server has accepted, with nothing sent on it yet. */
async function acceptedConnection(t: { app: { server: net.Server } }, url: string) {
  const { hostname, port } = new URL(url);
  const accepted = once(t.app.server, 'connection');
  const socket = net.connect(Number(port), hostname);
  opened.push(socket);
  let received = '';
  socket.on('data', (d) => {
    received += d;
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await accepted;
  return {
    socket,
    closed,
    /** Sends `request`; resolves with everything received until the connection closed ('' when reset). */
    async exchange(request: string) {
      socket.write(request);
      const timer = setTimeout(() => socket.destroy(), 10_000);
      await closed;
      clearTimeout(timer);
      return received;
    },
  };
}

/** Status and headers (lower-cased) of a raw response. */
function head(raw: string) {
  const [statusLine = '', ...lines] = raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers };
}

/** Requests in flight, from the server's gauge. */
async function inFlight(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^colloquy_http_requests_in_flight(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? 0);
}

const chatRequest = () => {
  const body = JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello' }] });
  return (
    `POST /v1/chat/completions HTTP/1.1\r\nhost: colloquy\r\nauthorization: Bearer ${TEST_MASTER_KEY}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
};

describe('shutdown with a proxy still sending', () => {
  it('closes the listener after the delay while a generation runs, and serves what reaches open connections', async () => {
    let draining = false;
    // Words 1 s apart: the generation runs until the test ends the drain.
    const t = await startTestApp({ isDraining: () => draining, env: { DEMO_WORD_DELAY_MS: '1000' } });
    let closed: Promise<void> | undefined;
    try {
      const url = await t.listen();
      const user = await createUser(t, 'drain-listener@example.com');
      const auth = bearer(user.accessToken);
      const conversation = await t.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: auth,
        payload: { model: 'demo' },
      });
      assert.equal(conversation.statusCode, 201, conversation.body);
      const { id } = conversation.json() as { id: string };
      const generation = await fetch(`${url}/api/conversations/${id}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ content: 'tell me a long story' }),
      });
      assert.equal(generation.status, 200);
      let generationEnded = false;
      const generationText = generation.text().finally(() => {
        generationEnded = true;
      });

      // A proxy's pooled keep-alive connection, idle at SIGTERM.
      const pooled = await acceptedConnection(t, url);
      pooled.socket.write('GET /health/live HTTP/1.1\r\nhost: colloquy\r\n\r\n');
      await eventually(() => pooled.socket.bytesRead > 0, 5_000, 'the pooled connection was answered');

      // SIGTERM (server.ts): draining, idle connections ended, then swept every 100 ms.
      draining = true;
      t.app.server.closeIdleConnections();
      await pooled.closed;

      // A connection a proxy opens during SHUTDOWN_DELAY, swept before its first request was read.
      const duringDelay = await acceptedConnection(t, url);
      t.app.server.closeIdleConnections();
      const served = head(await duringDelay.exchange(chatRequest()));
      assert.equal(served.status, 200, 'a request on a connection accepted during the delay is served');
      assert.equal(served.headers.connection, 'close');

      // One accepted just before the listener closes, its request still on its way; and a conversation turn
      // whose body is still on its way.
      const beforeClose = await acceptedConnection(t, url);
      const conversationTurn = await acceptedConnection(t, url);
      const body = JSON.stringify({ content: 'one more', stream: false });
      conversationTurn.socket.write(
        `POST /api/conversations/${id}/messages HTTP/1.1\r\nhost: colloquy\r\n` +
          `authorization: ${auth.authorization}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\n\r\n`,
      );
      await eventually(async () => (await inFlight(url)) >= 2, 5_000, 'the conversation turn is in flight');

      // SHUTDOWN_DELAY over (server.ts calls close()): the listener closes although the generation runs.
      closed = t.app.close();
      await eventually(() => !t.app.server.listening, 5_000, 'the listener closes while the generation runs');
      assert.equal(generationEnded, false, 'the generation is still running');
      const late = head(await beforeClose.exchange(chatRequest()));
      assert.equal(late.status, 200, 'a request on a connection open before the listener closed is served');
      assert.equal(late.headers.connection, 'close');

      const refused = await new Promise<string>((resolve) => {
        const socket = net.connect(Number(new URL(url).port), '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve('connected');
        });
        socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      assert.equal(refused, 'ECONNREFUSED', 'a new connection is refused: a proxy tries the next replica');

      // The one thing that cannot start any more: a new generation (its rows would outlive the process).
      const turn = head(await conversationTurn.exchange(body));
      assert.equal(turn.status, 503, 'a new generation is refused');
      assert.ok(Number(turn.headers['retry-after']) > 0, 'Retry-After');

      t.app.endOpenStreams(); // SHUTDOWN_TIMEOUT over (server.ts)
      await generationText;
      await closed;
    } finally {
      // A connection that never sends its request holds the server's close() open.
      for (const socket of opened) socket.destroy();
      t.app.endOpenStreams();
      await closed?.catch(() => {});
      await t.close();
    }
  });
});
