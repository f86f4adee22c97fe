import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';

export interface LifecycleOptions {
  isDraining: () => boolean;
  maxEventLoopDelayMs: number;
  maxHeapBytes: number;
}

const WARM_UP_MS = 15_000;
const ALWAYS_SERVED = new Set(['/health', '/health/live', '/health/ready', '/metrics']);

/**
 * Shutdown and overload behaviour: connections are retired while draining, and under overload (event-loop
 * lag, heap) new work gets 503 + Retry-After so a load balancer moves it elsewhere instead of the process
 * collapsing. Health and metrics stay up.
 */
export const lifecyclePlugin = fp(
  async (app: FastifyInstance, options: LifecycleOptions) => {
    // Draining (SIGTERM, before the listener closes): readiness already fails, and every answer closes its
    // connection, so a proxy retires its pooled connections cleanly instead of racing a close. Set on the raw
    // response so hijacked event streams (which write their own head) close too.
    app.addHook('onRequest', async (_request, reply) => {
      if (options.isDraining()) reply.raw.shouldKeepAlive = false;
    });
    const registeredAt = Date.now();
    if (options.maxEventLoopDelayMs > 0 || options.maxHeapBytes > 0) {
      await app.register(underPressure, {
        maxEventLoopDelay: options.maxEventLoopDelayMs,
        maxHeapUsedBytes: options.maxHeapBytes,
        retryAfter: 5,
        exposeStatusRoute: false,
        pressureHandler: (request, _reply, type, value) => {
          // Start-up (module loading, schema compilation) reads as event-loop lag: no shedding while warming up.
          if (ALWAYS_SERVED.has(request.url.split('?')[0]!) || Date.now() - registeredAt < WARM_UP_MS) return;
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
