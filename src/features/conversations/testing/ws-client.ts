import { createRequire } from 'node:module';

/** The parts of the `ws` client used by tests (the package ships no types of its own). */
export interface WsClient {
  readonly readyState: number;
  send(data: string): void;
  close(): void;
  on(event: 'open' | 'close', listener: () => void): this;
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
          throw new Error(`timed out waiting for a frame; got ${JSON.stringify(frames)}`);
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
