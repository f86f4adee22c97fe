import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { normalizeText } from '../core/text-normalize.js';

/**
 * How request bodies are read, for every route registered after this plugin:
 *
 * - An empty JSON body is no body (plugins/json-body.ts).
 * - On /api, a JSON body is strict: an object schema without `additionalProperties` gets `false`, and Ajv
 *   no longer drops unknown fields silently (`removeAdditional: false` in app.ts), so a misspelt field is a
 *   400 naming it. /v1 keeps passing unknown fields through to the upstream (its schemas allow them).
 * - On /api, bodies and query strings are normalised (core/text-normalize.ts), so SQLite and PostgreSQL
 *   store the same text.
 */
export const apiBodiesPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRoute', (route: RouteOptions) => {
      if (!isApiRoute(route.url)) return;
      const body = route.schema?.body as { type?: unknown; additionalProperties?: unknown } | undefined;
      if (body && body.type === 'object' && body.additionalProperties === undefined) {
        // A copy: the same schema object may serve another route.
        route.schema = { ...route.schema, body: { ...body, additionalProperties: false } };
      }
      route.preValidation = [
        normalizeRequestText,
        ...(Array.isArray(route.preValidation)
          ? route.preValidation
          : route.preValidation
            ? [route.preValidation]
            : []),
      ];
    });
  },
  { name: 'api-bodies', dependencies: ['error-handler', 'json-body'] },
);

const isApiRoute = (url: string | undefined) => url === '/api' || url?.startsWith('/api/') === true;

async function normalizeRequestText(request: FastifyRequest) {
  if (request.body !== undefined) request.body = normalizeText(request.body, 'body');
  request.query = normalizeText(request.query, 'query');
}
