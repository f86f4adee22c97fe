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
 * Refuses new work with 503 + Retry-After while shutting down or overloaded (event-loop lag, heap), so a
 * load balancer moves traffic elsewhere instead of the process collapsing. Health and metrics stay up.
 */
export const lifecyclePlugin = fp(
  async (app: FastifyInstance, options: LifecycleOptions) => {
    app.addHook('onRequest', async (request, reply) => {
      if (options.isDraining() && !ALWAYS_SERVED.has(request.url.split('?')[0]!)) {
        reply.header('connection', 'close');
        throw new AppError('service_unavailable', 'the server is shutting down; retry on another instance', {
          headers: { 'retry-after': '5' },
        });
      }
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
