import { createRequire } from 'node:module';

/**
 * Reads the heap of a Node process started with `--inspect=127.0.0.1:0`, after a full garbage collection,
 * over the DevTools protocol: nothing in the product exposes a GC or heap figures, so production has none.
 */
interface InspectorSocket {
  send(data: string): void;
  close(): void;
  on(event: 'open' | 'close', listener: () => void): this;
  on(event: 'message', listener: (data: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

// `ws` is what @fastify/websocket runs on, so it is always installed alongside it (Node 20 has no client).
const WebSocket = createRequire(import.meta.url)('ws') as new (url: string) => InspectorSocket;

/** The inspector's WebSocket URL, from the "Debugger listening on ws://…" line a process prints on stderr. */
export const inspectorUrl = (stderr: string) => /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1];

export interface HeapProbe {
  /** heapUsed in bytes right after a full GC. */
  heapAfterGc(): Promise<number>;
  close(): void;
}

export async function connectInspector(url: string): Promise<HeapProbe> {
  const socket = new WebSocket(url);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as {
      id?: number;
      result?: unknown;
      error?: { message: string };
    };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (!waiter) return; // an event, not an answer
    pending.delete(message.id!);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
  });
  socket.on('close', () => {
    for (const waiter of pending.values()) waiter.reject(new Error('the inspector connection closed'));
    pending.clear();
  });
  await new Promise<void>((resolve, reject) => {
    socket.on('open', resolve);
    socket.on('error', reject);
  });
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });
  return {
    heapAfterGc: async () => {
      // Twice: objects with finalizers (and weak references) are only freed by a second collection.
      await call('HeapProfiler.collectGarbage');
      await call('HeapProfiler.collectGarbage');
      const evaluated = (await call('Runtime.evaluate', {
        expression: 'process.memoryUsage().heapUsed',
        returnByValue: true,
      })) as { result: { value: number } };
      return evaluated.result.value;
    },
    close: () => socket.close(),
  };
}
