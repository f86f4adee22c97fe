import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

export interface SecurityOptions {
  allowedOrigins: string[];
  httpsOnly: boolean;
}

/**
 * Security headers on every response and CORS for the listed origins only. A page's own CSP is set by
 * whatever serves it (the console, the API docs); API answers are JSON and need none.
 */
export const securityPlugin = fp(
  async (app: FastifyInstance, options: SecurityOptions) => {
    await app.register(helmet, {
      global: true,
      contentSecurityPolicy: false,
      crossOriginEmbedderPolicy: false,
      // HSTS only when the operator says the service is reached over HTTPS alone (it pins browsers to HTTPS).
      hsts: options.httpsOnly ? { maxAge: 31_536_000, includeSubDomains: true } : false,
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
    });
    const any = options.allowedOrigins.includes('*');
    await app.register(cors, {
      // No list: same-origin only (browsers get no CORS headers). `*` (development) allows any origin
      // without credentials; a list allows those origins with credentials.
      origin: any ? '*' : options.allowedOrigins.length ? options.allowedOrigins : false,
      credentials: !any && options.allowedOrigins.length > 0,
      methods: ['GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS'],
      allowedHeaders: [
        'authorization',
        'content-type',
        'x-request-id',
        'idempotency-key',
        'last-event-id',
        'cache-control',
      ],
      exposedHeaders: [
        'x-request-id',
        'x-cache',
        'retry-after',
        'x-ratelimit-limit',
        'x-ratelimit-remaining',
        'x-ratelimit-reset',
      ],
      maxAge: 600,
    });
  },
  { name: 'security' },
);
