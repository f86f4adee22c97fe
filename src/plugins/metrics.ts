import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { answerMetricsCollection, isClusterWorker, scrapeCluster } from '../cluster/metrics.js';
import { AppError } from '../core/errors.js';
import { HistogramCells } from '../metrics/label-cells.js';
import type { Metrics } from '../metrics/registry.js';

export interface MetricsPluginOptions {
  metrics: Metrics;
  token: string | undefined;
  /** Production: without a token /metrics is refused (403), never open to whoever can reach the port. */
  tokenRequired?: boolean;
  /** Refreshes gauges that are read rather than counted (pool, breakers, Redis) right before a scrape. */
  beforeScrape?: () => Promise<void> | void;
}

const sameToken = (given: string, expected: string) =>
  given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));

/**
 * Times every request by route template and serves `GET /metrics` behind METRICS_TOKEN when set; in production
 * only with it (usage, traffic and model figures are not for whoever can reach the port).
 */
export const metricsPlugin = fp(
  async (app: FastifyInstance, options: MetricsPluginOptions) => {
    const { metrics } = options;
    const refused = options.tokenRequired === true && !options.token;
    if (refused) {
      app.log.warn(
        'METRICS_TOKEN is not set: /metrics answers 403 in production; set METRICS_TOKEN and send it as a bearer token',
      );
    }
    // A worker of a clustered `serve` answers /metrics for all of them (src/cluster/metrics.ts).
    const clustered = isClusterWorker();
    if (clustered) {
      const stopAnswering = answerMetricsCollection(metrics.registry, options.beforeScrape);
      app.addHook('onClose', async () => stopAnswering());
    }
    const httpDuration = new HistogramCells(metrics.httpDuration, ['route', 'method', 'status_code']);
    // A callback-style hook: on every request, an async one costs a promise for nothing.
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? 'unmatched';
      if (route !== '/metrics')
        httpDuration.observe(reply.elapsedTime / 1000, route, request.method, String(reply.statusCode));
      done();
    });

    app.get(
      '/metrics',
      { logLevel: 'silent', schema: { tags: ['operations'], summary: 'Prometheus metrics (text format)' } },
      async (request, reply) => {
        if (refused) {
          throw new AppError(
            'forbidden',
            'metrics are not served: set METRICS_TOKEN (required in production) and send it as a bearer token',
          );
        }
        if (options.token) {
          const given = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1] ?? '';
          if (!sameToken(given, options.token))
            throw new AppError('unauthorized', 'a valid METRICS_TOKEN is required');
        }
        if (clustered) {
          const text = await scrapeCluster().catch((err: Error) => {
            throw new AppError(
              'service_unavailable',
              `the workers' metrics could not be gathered: ${err.message}`,
            );
          });
          reply.header('content-type', metrics.registry.contentType);
          return text;
        }
        await options.beforeScrape?.();
        reply.header('content-type', metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  },
  { name: 'metrics', dependencies: ['error-handler'] },
);
