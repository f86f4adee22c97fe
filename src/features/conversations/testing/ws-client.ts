import { mkdtempSync, rmSync } from 'node:fs';
import type http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** The parts of the `ws` client used by tests (the package ships no types of its own). */
export interface WsClient {
  readonly readyState: number;
  send(data: string): void;
  close(): void;
  /** Drops the connection at once, without the closing handshake. */
  terminate(): void;
  /** Stops reading the socket (what arrives stays in the kernel's buffers), as a stalled client does. */
  pause(): void;
  resume(): void;
  on(event: 'open', listener: () => void): this;
  on(event: 'close', listener: (code: number) => void): this;
  on(event: 'message', listener: (data: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(
    event: 'unexpected-response',
    listener: (req: { destroy(): void }, res: { statusCode: number }) => void,
  ): this;
}

type WsConstructor = new (url: string, options?: { headers?: Record<string, string> }) => WsClient;

// `ws` is what @fastify/websocket runs on, so it is always installed alongside it.
const WebSocket = createRequire(import.meta.url)('ws') as WsConstructor;

/** What a failed wait got, shortened: a test may stream megabytes. */
const excerpt = (items: unknown[]) => {
  const text = JSON.stringify(items);
  return text.length > 4_000 ? `${text.slice(0, 2_000)} … ${text.slice(-2_000)}` : text;
};

/** A connected client collecting JSON frames; rejects with the HTTP status when the upgrade is refused. */
export async function connectWs(url: string, headers?: Record<string, string>) {
  const socket = new WebSocket(url, headers ? { headers } : {});
  // biome-ignore lint/suspicious/noExplicitAny: test frames are inspected freely
  const frames: any[] = [];
  let wake: (() => void) | undefined;
  socket.on('message', (data) => {
    frames.push(JSON.parse(data.toString()));
    wake?.();
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.on('open', () => resolve());
    socket.on('unexpected-response', (req, res) => {
      req.destroy();
      reject(new Error(`HTTP ${res.statusCode}`));
    });
    socket.on('error', reject);
  });
  return {
    socket,
    frames,
    closed,
    send: (frame: unknown) => socket.send(JSON.stringify(frame)),
    // biome-ignore lint/suspicious/noExplicitAny: as above
    async waitFor(predicate: (frame: any) => boolean, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const found = frames.find(predicate);
        if (found) return found;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for a frame; got ${frames.length}: ${excerpt(frames)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 50);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    close: async () => {
      socket.close();
      await closed;
    },
  };
}

/**
 * A Unix socket in front of an HTTP server (connect with `ws+unix://<path>:/url`), handing it each connection
 * as its own, and the server's end of each to the test. For tests of a client that stops reading: on
 * loopback TCP the kernel's buffers autotune up to tens of MB (net.ipv4.tcp_rmem), so a reply would have to
 * be that long before the server felt it; a Unix socket holds about net.core.wmem_default (~200 KB).
 */
export async function unixFrontDoor(server: http.Server) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-ws-'));
  const socketPath = path.join(dir, 'door.sock');
  const accepted: net.Socket[] = [];
  let onAccept: ((socket: net.Socket) => void) | undefined;
  const door = net.createServer((socket) => {
    accepted.push(socket);
    onAccept?.(socket);
    server.emit('connection', socket);
  });
  await new Promise<void>((resolve, reject) => {
    door.once('error', reject);
    door.listen(socketPath, () => resolve());
  });
  return {
    url: (pathAndQuery: string) => `ws+unix://${socketPath}:${pathAndQuery}`,
    /** The server's end of the next connection (or of the one already made). */
    nextServerSocket(): Promise<net.Socket> {
      const waiting = accepted.shift();
      if (waiting) return Promise.resolve(waiting);
      return new Promise((resolve) => {
        onAccept = (socket) => {
          onAccept = undefined;
          accepted.shift();
          resolve(socket);
        };
      });
    },
    async close() {
      await new Promise<void>((resolve) => door.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
