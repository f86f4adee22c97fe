import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Gauge } from 'prom-client';
import { AppError } from '../core/errors.js';

export interface LifecycleOptions {
  isDraining: () => boolean;
  maxEventLoopDelayMs: number;
  maxHeapBytes: number;
  /** Requests (open streams and WebSockets included) served at once; past it new ones get 503. 0: no cap. */
  maxConcurrentRequests: number;
  /** Set to the number of requests in flight (health and metrics excluded). */
  inFlightGauge?: Gauge | undefined;
}

const WARM_UP_MS = 15_000;
const ALWAYS_SERVED = new Set(['/health', '/health/live', '/health/ready', '/metrics']);
const pathOf = (url: string) => url.split('?')[0]!;

/**
 * Shutdown and overload behaviour: connections are retired while draining, and under overload (too many
 * requests in flight, event-loop lag, heap) new work gets 503 + Retry-After so a load balancer moves it
 * elsewhere instead of the process collapsing. Health and metrics stay up.
 */
export const lifecyclePlugin = fp(
  async (app: FastifyInstance, options: LifecycleOptions) => {
    // Draining (SIGTERM, before the listener closes): readiness already fails, and every answer closes its
    // connection, so a proxy retires its pooled connections cleanly instead of racing a close. Set on the raw
    // response so hijacked event streams (which write their own head) close too.
    // Callback-style hooks here and below: an async hook would cost every request a promise.
    app.addHook('onRequest', (_request, reply, done) => {
      if (options.isDraining()) reply.raw.shouldKeepAlive = false;
      done();
    });
    limitConcurrency(app, options.maxConcurrentRequests, options.inFlightGauge);
    const registeredAt = Date.now();
    if (options.maxEventLoopDelayMs > 0 || options.maxHeapBytes > 0) {
      await app.register(underPressure, {
        maxEventLoopDelay: options.maxEventLoopDelayMs,
        maxHeapUsedBytes: options.maxHeapBytes,
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
 */
function limitConcurrency(app: FastifyInstance, cap: number, gauge: Gauge | undefined) {
  let inFlight = 0;
  gauge?.set(0);
  app.addHook('onRequest', (request, reply, done) => {
    if (ALWAYS_SERVED.has(pathOf(request.url))) return done();
    if (cap > 0 && inFlight >= cap) {
      return done(
        new AppError(
          'service_unavailable',
          `the server is at its limit of ${cap} concurrent requests; retry shortly`,
          { headers: { 'retry-after': '1' } },
        ),
      );
    }
    inFlight++;
    gauge?.inc();
    reply.raw.once('close', () => {
      inFlight--;
      gauge?.dec();
    });
    done();
  });
}
