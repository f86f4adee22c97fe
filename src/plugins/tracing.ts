import type { Span } from '@opentelemetry/api';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Tracing } from '../tracing/tracing.js';

declare module 'fastify' {
  interface FastifyRequest {
    span: Span | null;
  }
}

/** A server span per request; its trace id joins the request's log lines. Ends when the response closes. */
export const tracingPlugin = fp(
  async (app: FastifyInstance, options: { tracing: Tracing }) => {
    const { tracing } = options;
    app.decorateRequest('span', null);
    app.addHook('onRequest', async (request, reply) => {
      const span = tracing.startRequest(request.id, request.method, request.url.split('?')[0]!);
      request.span = span;
      const { traceId, spanId } = span.spanContext();
      request.log = request.log.child({ trace_id: traceId, span_id: spanId });
      // 'close' rather than onResponse: hijacked streams never reach onResponse.
      reply.raw.once('close', () =>
        tracing.endRequest(request.id, span, request.method, reply.raw.statusCode, request.routeOptions.url),
      );
    });
    app.addHook('onClose', async () => tracing.shutdown());
  },
  { name: 'tracing' },
);
