import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { FakeGateway, Gate } from './testing/fake-gateway.js';
import { SseConnection } from './testing/sse-client.js';
import { connectWs, unixFrontDoor } from './testing/ws-client.js';
import { SLOW_CLIENT_CLOSE_CODE, WS_HIGH_WATER_BYTES, WS_MAX_BUFFERED_BYTES } from './ws-routes.js';

// A client that stops reading its conversation WebSocket (docs/conversations.md, "WebSocket protocol").
// The client connects through a Unix socket (see unixFrontDoor): its kernel buffers are ~200 KB where
// loopback TCP's grow to tens of MB, so a reply of a few MB is enough to fill them. Every reply here has a
// fixed number of chunks of a fixed size; every wait is for an event, with a deadline.

const PIECE_BYTES = 16 * 1024;
/** `count` chunks of 16 KiB, each starting with its number: a reply out of order or missing one shows. */
const replyChunks = (count: number) =>
  Array.from({ length: count }, (_, i) => `<${i}>`.padEnd(PIECE_BYTES, String.fromCharCode(97 + (i % 26))));
/**
 * Room for what the kernel holds on a Unix socket (its send buffer: net.core.wmem_default, ~200 KB unless
 * raised) and the frames in flight.
 */
const SLACK_BYTES = Math.max(512 * 1024, 2 * unixSendBuffer());
function unixSendBuffer(): number {
  try {
    return Number(readFileSync('/proc/sys/net/core/wmem_default', 'utf8')) || 0;
  } catch {
    return 0; // not Linux: smaller still (macOS: 8 KB)
  }
}
const WAIT_MS = 30_000;

/**
 * Resolves when the server writes a close frame on `socket`. A frame's first byte is 0x80 (FIN) | opcode
 * (RFC 6455 §5.2), 0x88 for a close (§5.5.1); `ws` writes a frame's header on its own, then its payload, and
 * text frames start with 0x81 and carry JSON, so a write starting with 0x88 is a close frame's header. Writes
 * still go out as before.
 */
function closeFrameWritten(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const write = socket.write;
    socket.write = function (this: net.Socket, chunk: unknown, ...rest: unknown[]) {
      if (Buffer.isBuffer(chunk) && chunk.length <= 14 && chunk[0] === 0x88) resolve();
      return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof socket.write;
  });
}

function withDeadline<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

describe('conversation WebSocket: a client that stops reading', () => {
  let h: TestApp;
  let gateway: FakeGateway;
  let a: TestUser;
  let base: string;
  let door: Awaited<ReturnType<typeof unixFrontDoor>>;
  before(async () => {
    gateway = new FakeGateway();
    h = await startTestApp({ gateway });
    base = await h.listen();
    door = await unixFrontDoor(h.app.server);
    a = await createUser(h, 'ws-slow@example.com');
  });
  after(async () => {
    await door?.close();
    await h?.close();
  });

  /** A conversation, its WebSocket (not reading yet: paused once open) and the server's end of it. */
  async function openPaused() {
    const created = await h.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(a.accessToken),
      payload: { model: 'fake-model' },
    });
    const conversationId = created.json().id as string;
    const serverSide = door.nextServerSocket();
    const ws = await connectWs(
      door.url(`/api/conversations/${conversationId}/ws?token=${encodeURIComponent(a.accessToken)}`),
    );
    ws.socket.pause();
    const closeCode = new Promise<number>((resolve) => ws.socket.on('close', (code) => resolve(code)));
    return { conversationId, ws, server: await serverSide, closeCode };
  }

  /** The generation id of the gateway's next call (the generation's id is the call's request id). */
  const nextGeneration = (script: Parameters<FakeGateway['script']>[0]) =>
    new Promise<string>((resolve) => {
      gateway.script({ ...script, onCall: (request) => resolve(request.requestId) });
    });

  const rejoin = (generationId: string, lastEventId?: number) =>
    SseConnection.open(`${base}/api/generations/${generationId}/events`, {
      headers: {
        ...bearer(a.accessToken),
        ...(lastEventId === undefined ? {} : { 'last-event-id': String(lastEventId) }),
      },
    });

  it('stops taking events while the client does not read, and delivers them all, in order, once it does', async () => {
    // A reply of at least 4 MiB, twice that with its done event: four times what the relay may take without
    // the client (the high-water mark and the kernel's share).
    const chunks = replyChunks(
      Math.max(256, Math.ceil((2 * (WS_HIGH_WATER_BYTES + SLACK_BYTES)) / PIECE_BYTES)),
    );
    const text = chunks.join('');
    const { ws, server } = await openPaused();
    let sse: SseConnection | undefined;
    try {
      const generation = nextGeneration({ chunks });
      ws.send({ type: 'send', content: 'a long reply, please' });
      const generationId = await withDeadline(generation, 'the model call');

      // The generation runs to its end without the client: re-joined over HTTP, it is all there.
      sse = await rejoin(generationId);
      const done = await sse.waitFor((e) => e.event === 'done' || e.event === 'error', WAIT_MS);
      assert.equal(done.event, 'done');
      assert.equal(done.data.message.content, text);

      // Meanwhile the server stopped taking events for the socket: what it wrote stays near the high-water
      // mark (plus the kernel's share), not the 8 MiB the generation produced.
      const taken = server.bytesWritten;
      assert.ok(
        taken <= WS_HIGH_WATER_BYTES + SLACK_BYTES,
        `the server wrote ${taken} bytes to a client that reads nothing (reply: ${text.length} bytes)`,
      );
      assert.ok(server.writableLength <= WS_HIGH_WATER_BYTES + 2 * PIECE_BYTES, 'buffered past the mark');
      assert.equal(server.destroyed, false, 'the socket is still open');

      // The client reads again: every event, in order, then done; the socket stays open (a ping is answered).
      ws.socket.resume();
      const wsDone = await ws.waitFor((f) => f.type === 'done' && f.generation_id === generationId, WAIT_MS);
      const frames = ws.frames.filter((f) => f.generation_id === generationId);
      assert.deepEqual(
        frames.map((f) => f.id),
        frames.map((_, i) => i + 1),
      );
      assert.equal(frames.filter((f) => f.type === 'delta').length, chunks.length);
      assert.equal(
        frames
          .filter((f) => f.type === 'delta')
          .map((f) => f.data.content)
          .join(''),
        text,
      );
      assert.equal(wsDone.data.message.status, 'complete');
      assert.equal(wsDone.data.message.content, text);
      ws.send({ type: 'ping' });
      await ws.waitFor((f) => f.type === 'pong', WAIT_MS);
    } finally {
      sse?.close();
      ws.socket.resume();
      ws.socket.terminate();
    }
  });

  it('closes with 4408 a client that keeps sending without reading; the reply is completed and stored', async () => {
    // The generation streams its 128 chunks (2 MiB: past the high-water mark), then waits at the gate.
    const chunks = replyChunks(128);
    const text = chunks.join('');
    const gate = new Gate();
    const { conversationId, ws, server, closeCode } = await openPaused();
    const closing = closeFrameWritten(server);
    let sse: SseConnection | undefined;
    try {
      const generation = nextGeneration({ chunks, holdAfter: chunks.length, gate });
      ws.send({ type: 'send', content: 'a long reply, please' });
      const generationId = await withDeadline(generation, 'the model call');
      await withDeadline(gate.reached, 'the generation streaming its chunks');

      // Frames the server must answer (a refusal quoting the unknown 256 KiB type), never read: a bounded
      // number (40 here) owing more than the 8 MiB limit and the kernel's share. The server closes once the
      // limit is passed.
      const frame = JSON.stringify({ type: 'x'.repeat(256 * 1024) });
      const frames = Math.ceil((WS_MAX_BUFFERED_BYTES + 2 * SLACK_BYTES) / frame.length) + 4;
      for (let i = 0; i < frames; i++) ws.socket.send(frame);
      await withDeadline(closing, 'the server closing the socket');

      // The generation goes on without its socket, and ends stored.
      gate.open();
      // The client reads what it was sent: the events up to some id, refusals, then close code 4408.
      ws.socket.resume();
      assert.equal(await withDeadline(closeCode, 'the client seeing the close'), SLOW_CLIENT_CLOSE_CODE);
      const received = ws.frames.filter((f) => f.generation_id === generationId);
      assert.deepEqual(
        received.map((f) => f.id),
        received.map((_, i) => i + 1),
      );
      assert.ok(
        received.every((f) => f.type !== 'done'),
        'the close came before the reply ended',
      );
      assert.ok(ws.frames.some((f) => f.type === 'rejected'));
      const lastId = received.at(-1)?.id ?? 0;

      // Re-joined from its last event id over HTTP, the client gets the rest: the whole reply.
      sse = await rejoin(generationId, lastId);
      const done = await sse.waitFor((e) => e.event === 'done' || e.event === 'error', WAIT_MS);
      assert.equal(done.event, 'done', 'the reply was completed');
      assert.equal(sse.events[0]?.id, lastId + 1);
      const deltas = [...received, ...sse.events.map((e) => ({ type: e.event, data: e.data }))]
        .filter((f) => f.type === 'delta')
        .map((f) => f.data.content);
      assert.equal(deltas.join(''), text);
      assert.equal(done.data.message.status, 'complete');
      const stored = await h.inject({
        method: 'GET',
        url: `/api/conversations/${conversationId}/messages`,
        headers: bearer(a.accessToken),
      });
      const reply = (stored.json().data as { role: string; status: string; content: string }[]).find(
        (m) => m.role === 'assistant',
      );
      assert.equal(reply?.status, 'complete');
      assert.equal(reply?.content, text);
    } finally {
      gate.open();
      sse?.close();
      ws.socket.resume();
      ws.socket.terminate();
    }
  });
});
