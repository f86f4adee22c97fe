import type { IncomingMessage, ServerResponse } from 'node:http';
import cors, { type FastifyCorsOptions } from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import helmet, { type HelmetOptions } from 'helmet';

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
    const headers = securityHeaders({
      contentSecurityPolicy: false,
      crossOriginEmbedderPolicy: false,
      // HSTS only when the operator says the service is reached over HTTPS alone (it pins browsers to HTTPS).
      strictTransportSecurity: options.httpsOnly ? { maxAge: 31_536_000, includeSubDomains: true } : false,
      xFrameOptions: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
    });
    // Fastify's own header list, not the socket's: Fastify hands it to writeHead in one go, where setHeader
    // would validate each header twice and keep a [name, value] array per header for as long as the response
    // is open (2 KiB per stream). Hijacked responses (SSE) send reply.getHeaders() themselves.
    // One header at a time from a list made once: reply.headers() makes an array of the keys per request.
    const entries = Object.entries(headers);
    app.addHook('onRequest', (_request, reply, done) => {
      for (const [name, value] of entries) reply.header(name, value);
      done();
    });
    const any = options.allowedOrigins.includes('*');
    const corsOptions = {
      // No list: same-origin only (browsers get no CORS headers). `*` (development) allows any origin
      // without credentials; a list allows those origins with credentials.
      origin: any ? '*' : options.allowedOrigins.length ? options.allowedOrigins : false,
      credentials: false,
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
    } satisfies FastifyCorsOptions;
    const listed = new Set(any ? [] : options.allowedOrigins);
    if (corsOptions.origin === false) sameOriginOnly(app);
    else if (listed.size === 0) await app.register(cors, corsOptions);
    else {
      // `Access-Control-Allow-Credentials: true` only beside an allowed origin (@fastify/cors sends it on
      // every response when `credentials` is on, issue 19). Two fixed option sets, picked per request.
      const withCredentials = { ...corsOptions, credentials: true };
      await app.register(cors, {
        delegator: (request, callback) =>
          callback(null, listed.has(request.headers.origin ?? '') ? withCredentials : corsOptions),
      });
    }
  },
  { name: 'security' },
);

/**
 * What @fastify/cors does with `origin: false`, without its per-request hook: that hook only found CORS off
 * and went on, after copying its options and building the route's options object twice (~0.6 KiB a request).
 * A preflight is not found, as the plugin answers it (its OPTIONS route, the request flag it decorates).
 */
function sameOriginOnly(app: FastifyInstance) {
  app.decorateRequest('corsPreflightEnabled', false);
  app.options('*', { schema: { hide: true } }, (_request, reply) => {
    reply.callNotFound();
  });
}

/**
 * The headers helmet sets with these options, computed once: they are the same for every request, while
 * @fastify/helmet builds helmet's whole middleware anew for each one (3 % of a proxied request's CPU).
 */
function securityHeaders(options: HelmetOptions): Record<string, string> {
  const headers = new Map<string, string>();
  const recorder = {
    setHeader: (name: string, value: unknown) => headers.set(name, String(value)),
    removeHeader: (name: string) => headers.delete(name),
  };
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => {});
  return Object.fromEntries(headers);
}
