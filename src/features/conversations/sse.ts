import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyReply } from 'fastify';
import { CallController } from '../../core/call-signal.js';
import type { ErrorBody } from '../../core/errors.js';
import type { GenerationEvent } from './events.js';

export const formatSse = (event: GenerationEvent) =>
  `id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event.data)}\n\n`;

export interface EventStream {
  /** Aborts when the client goes away (or the server closes the stream). */
  readonly signal: AbortSignal;
  send(event: GenerationEvent): Promise<void>;
  /**
   * Ends the stream early with an `event: closed` (no id: not one of the generation's events) saying why,
   * e.g. the credential was revoked; the generation is not affected by it.
   */
  closeWith(error: ErrorBody['error']): void;
  end(): void;
}

const KEEPALIVE_MS = 15_000;

/**
 * Takes over the response for server-sent events. A closed connection only aborts `signal`: whatever
 * produces the events (a generation) carries on without it.
 */
export function openEventStream(
  reply: FastifyReply,
  headers: Record<string, string>,
  stop?: AbortSignal,
): EventStream {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    // What hooks set (request id, security and CORS headers): hijacking skips Fastify's own writeHead.
    ...(reply.getHeaders() as OutgoingHttpHeaders),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    ...headers,
  });
  const controller = new CallController();
  const abort = () => controller.abort();
  res.once('close', abort);
  // Already aborted: a stream opened on a connection still open once shutdown ended the others.
  if (stop?.aborted) abort();
  else stop?.addEventListener('abort', abort, { once: true });
  // A comment line now and then keeps proxies from closing an idle stream (a slow first token).
  const keepalive = setInterval(() => {
    if (!res.destroyed) res.write(': keepalive\n\n');
  }, KEEPALIVE_MS);
  keepalive.unref();

  return {
    signal: controller.signal,
    async send(event) {
      if (res.destroyed || res.writableEnded) return;
      if (!res.write(formatSse(event))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            controller.signal.removeEventListener('abort', done);
            resolve();
          };
          res.once('drain', done);
          controller.signal.addEventListener('abort', done, { once: true });
        });
      }
    },
    closeWith(error) {
      if (!res.destroyed && !res.writableEnded)
        res.write(`event: closed\ndata: ${JSON.stringify({ error })}\n\n`);
      controller.abort();
    },
    end() {
      clearInterval(keepalive);
      stop?.removeEventListener('abort', abort);
      if (!res.destroyed && !res.writableEnded) res.end();
    },
  };
}
