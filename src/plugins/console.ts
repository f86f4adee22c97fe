import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

export interface ConsoleOptions {
  /** The built console (web/dist); defaults to web/dist next to src/ or dist/. */
  root?: string;
}

export const CONSOLE_CSP =
  "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; " +
  "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

export const defaultConsoleRoot = () =>
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'web', 'dist');

/**
 * The web console at /console: the Vite build of web/ (hashed assets cached for a year, index.html never
 * cached), index.html for every other /console/* path (client-side routes), and a strict CSP on these
 * responses only. Without a build, /console answers 503 saying how to make one.
 */
export async function consolePlugin(app: FastifyInstance, options: ConsoleOptions) {
  const root = options.root ?? defaultConsoleRoot();
  const indexFile = path.join(root, 'index.html');

  app.addHook('onSend', async (_request, reply, payload) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    return payload;
  });

  if (!existsSync(indexFile)) {
    const missing = async (_: unknown, reply: FastifyReply) =>
      reply.code(503).send({
        error: {
          message: `the console is not built (${indexFile} is missing): run \`npm run build:console\``,
          type: 'server_error',
          code: 'console_not_built',
          param: null,
        },
      });
    app.get('/console', { schema: { hide: true } }, missing);
    app.get('/console/*', { schema: { hide: true } }, missing);
    return;
  }

  const index = readFileSync(indexFile);
  const sendIndex = async (_: unknown, reply: FastifyReply) =>
    reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(index);

  await app.register(fastifyStatic, {
    root,
    prefix: '/console/',
    decorateReply: false,
    wildcard: false,
    index: false,
    cacheControl: false,
    setHeaders: (res, file) => {
      const hashed = file.startsWith(path.join(root, 'assets') + path.sep);
      res.header('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
  app.get('/console', { schema: { hide: true } }, sendIndex);
  app.get('/console/', { schema: { hide: true } }, sendIndex);
  // Client-side routes get the app; a missing asset is a plain 404, not HTML.
  app.get('/console/*', { schema: { hide: true } }, async (request, reply) => {
    const rest = (request.params as { '*': string })['*'];
    if (rest.startsWith('assets/') || /\.[a-z0-9]+$/i.test(rest)) return reply.callNotFound();
    return sendIndex(request, reply);
  });
}
