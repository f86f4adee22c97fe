import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { VERSION } from '../version.js';

/** The OpenAPI 3 document is generated from the route schemas: one source for validation, types and docs. */
export const openapiPlugin = fp(
  async (app: FastifyInstance, options: { expose: boolean }) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'Colloquy',
          version: VERSION,
          description:
            'Self-hosted AI chat backend: OpenAI-compatible /v1, conversations, auth and operations.',
        },
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              description: 'An access token (JWT), an API key (ck-…) or the master key',
            },
            apiKeyHeader: {
              type: 'apiKey',
              in: 'header',
              name: 'x-api-key',
              description: 'A Colloquy API key (ck-…), as Anthropic clients send it (Messages API)',
            },
          },
        },
      },
      refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    });
    // ENABLE_DOCS=false (production's default): the document is still built (app.swagger()), not served.
    if (!options.expose) return;
    await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'openapi' },
);
