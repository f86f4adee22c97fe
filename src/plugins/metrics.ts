import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';
import type { Metrics } from '../metrics/registry.js';

export interface MetricsPluginOptions {
  metrics: Metrics;
  token: string | undefined;
  /** Refreshes gauges that are read rather than counted (pool, breakers, Redis) right before a scrape. */
  beforeScrape?: () => Promise<void> | void;
}

const sameToken = (given: string, expected: string) =>
  given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));

/** Times every request by route template and serves `GET /metrics` (behind METRICS_TOKEN when set). */
export const metricsPlugin = fp(
  async (app: FastifyInstance, options: MetricsPluginOptions) => {
    const { metrics } = options;
    // A callback-style hook: on every request, an async one costs a promise for nothing.
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? 'unmatched';
      if (route !== '/metrics')
        metrics.httpDuration.observe(
          { route, method: request.method, status_code: String(reply.statusCode) },
          reply.elapsedTime / 1000,
        );
      done();
    });

    app.get(
      '/metrics',
      { logLevel: 'silent', schema: { tags: ['operations'], summary: 'Prometheus metrics (text format)' } },
      async (request, reply) => {
        if (options.token) {
          const given = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1] ?? '';
          if (!sameToken(given, options.token))
            throw new AppError('unauthorized', 'a valid METRICS_TOKEN is required');
        }
        await options.beforeScrape?.();
        reply.header('content-type', metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  },
  { name: 'metrics', dependencies: ['error-handler'] },
);
