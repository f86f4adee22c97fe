import type { ServerResponse } from 'node:http';
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply } from 'fastify';
import fp from 'fastify-plugin';
import type { Gauge } from 'prom-client';
import { AppError } from '../core/errors.js';

export interface LifecycleOptions {
  isDraining: () => boolean;
  maxEventLoopDelayMs: number;
  maxHeapBytes: number;
  /** Resident memory past which requests get 503 (derived from the memory limit); 0: off. */
  maxRssBytes?: number;
  /** Requests (open streams and WebSockets included) served at once; past it new ones get 503. 0: no cap. */
  maxConcurrentRequests: number;
  /** Set to the number of requests in flight (health and metrics excluded). */
  inFlightGauge?: Gauge | undefined;
}

const WARM_UP_MS = 15_000;
const ALWAYS_SERVED = new Set(['/health', '/health/live', '/health/ready', '/metrics']);
/** The path of a request URL, without allocating for the usual URL that has no query string. */
const pathOf = (url: string) => {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
};

/**
 * Shutdown and overload behaviour: connections are retired while draining, and under overload (too many
 * requests in flight, event-loop lag, heap) new work gets 503 + Retry-After so a load balancer moves it
 * elsewhere instead of the process collapsing. Health and metrics stay up.
 */
export const lifecyclePlugin = fp(
  async (app: FastifyInstance, options: LifecycleOptions) => {
    // Draining (SIGTERM on): readiness already fails, and every answer closes its connection, so a proxy
    // retires its pooled connections cleanly instead of racing a close. Set on the raw response so hijacked
    // event streams (which write their own head) close too. Requests are served until the process ends: once
    // the listener has closed (after SHUTDOWN_DELAY), one arriving on a connection still open is served like
    // any other (Fastify also answers it `Connection: close`), not refused — a proxy does not replay a POST it
    // already sent, so a 503 there would reach a client. Nothing stops working before the listener has closed
    // and every connection has ended: the application's own onClose hooks run only then.
    // One callback-style hook for draining and the concurrency cap (issue 26: each hook Fastify runs costs
    // every request its dispatch; an async hook would also cost a promise).
    const admit = limitConcurrency(options.maxConcurrentRequests, options.inFlightGauge, options.isDraining);
    app.addHook('onRequest', (request, reply, done) => {
      if (options.isDraining()) reply.raw.shouldKeepAlive = false;
      if (ALWAYS_SERVED.has(pathOf(request.url))) return done();
      done(admit(reply));
    });
    const registeredAt = Date.now();
    if (options.maxEventLoopDelayMs > 0 || options.maxHeapBytes > 0 || (options.maxRssBytes ?? 0) > 0) {
      await app.register(underPressure, {
        maxEventLoopDelay: options.maxEventLoopDelayMs,
        maxHeapUsedBytes: options.maxHeapBytes,
        maxRssBytes: options.maxRssBytes ?? 0,
        retryAfter: 5,
        exposeStatusRoute: false,
        pressureHandler: (request, _reply, type, value) => {
          // Start-up (module loading, schema compilation) reads as event-loop lag: no shedding while warming up.
          if (ALWAYS_SERVED.has(pathOf(request.url)) || Date.now() - registeredAt < WARM_UP_MS) return;
          throw new AppError(
            'service_unavailable',
            `the server is overloaded (${type}: ${value}); retry shortly`,
            {
              headers: { 'retry-after': '5' },
            },
          );
        },
      });
    }
  },
  { name: 'lifecycle', dependencies: ['error-handler'] },
);

/**
 * A hard cap on the requests in flight. A request counts from its first hook until its response is closed
 * (finished or the client went away), so a hijacked event stream or a WebSocket counts for as long as it is
 * open. Past the cap the answer is an immediate 503 + Retry-After, never a queue: a queue would only turn
 * overload into timeouts, while a refusal lets the client or the load balancer go elsewhere now.
 * While draining, the same listener retires the connection of each response that finishes.
 */
function limitConcurrency(
  cap: number,
  gauge: Gauge | undefined,
  isDraining: () => boolean,
): (reply: FastifyReply) => AppError | undefined {
  let inFlight = 0;
  gauge?.set(0);
  // One listener function for every response, not a closure per request.
  const closed = function (this: ServerResponse) {
    inFlight--;
    gauge?.dec();
    if (isDraining()) retireConnection(this);
  };
  return (reply) => {
    if (cap > 0 && inFlight >= cap) {
      return new AppError(
        'service_unavailable',
        `the server is at its limit of ${cap} concurrent requests; retry shortly`,
        { headers: { 'retry-after': '1' } },
      );
    }
    inFlight++;
    gauge?.inc();
    reply.raw.once('close', closed);
    return undefined;
  };
}

/**
 * Ends, while draining, the connection of a response that has just finished. A response begun before the
 * drain (a stream) was sent with keep-alive headers, so when it ends its connection looks reusable to a proxy
 * (nginx's upstream keepalive pool), which may send its next request on it at once; server.ts's idle sweep
 * (every 100 ms while draining) could then destroy it as that request arrives, and nginx does not replay a
 * POST it had sent. Ended here, in the tick its last bytes were written, the connection's FIN follows them at
 * once, so the proxy sees it closed rather than idle, and nothing sent on it later is read.
 *
 * Runs from the response's 'close' event: by then Node (lib/_http_server.js, resOnFinish) has detached the
 * response from its socket, and attached the next one if a pipelined request was already being served —
 * that connection is busy and left alone (the check Node's closeIdleConnections() makes, for one socket).
 * A response answered while draining already says `Connection: close`: Node is ending that socket itself
 * (no longer writable). Destroyed, like closeIdleConnections() does, not half-closed: a request arriving on a
 * half-closed connection would still be read and run, with no way to answer it.
 */
function retireConnection(response: ServerResponse) {
  const socket = response.req.socket as ServerResponse['req']['socket'] & { _httpMessage?: unknown };
  if (socket.destroyed || !socket.writable || socket._httpMessage) return;
  socket.destroy();
}
