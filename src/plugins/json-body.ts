import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';
import { jsonShapeProblem } from '../core/json-shape.js';
import { keepRawRequest } from '../providers/raw-request.js';

/**
 * Fastify's own JSON body parser (prototype poisoning refused, the body size limit, empty and invalid bodies
 * answered 400), except that an empty body is no body whatever its Content-Type says (`DELETE` with
 * `Content-Type: application/json` and nothing else was a 400; a route that needs a body still says so with its
 * own 400); followed by the shape check of core/json-shape.ts: a body nested too deep, or with an array
 * or object too large, answers 400 `invalid_request` before any route, hook or validator sees it.
 */
const CHAT_COMPLETIONS = '/v1/chat/completions';
/**
 * Below this a body is serialized again: a 91-byte request cost 2.6 µs serialized and 3.5 µs forwarded (the
 * scan and the bookkeeping), a 10 KB conversation 70 µs against 16 µs (bench/request-bytes-micro.ts).
 */
const PASS_THROUGH_MIN_CHARS = 1024;
const isChatCompletions = (url: string) =>
  url.startsWith(CHAT_COMPLETIONS) &&
  (url.length === CHAT_COMPLETIONS.length || url.charCodeAt(CHAT_COMPLETIONS.length) === 63); // '?'

export const jsonBodyPlugin = fp(
  async (app: FastifyInstance) => {
    const parse = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (body === '') return done(null, undefined);
      parse(request, body as string, (err, value) => {
        if (err) return done(err, undefined);
        const problem = jsonShapeProblem(value);
        if (problem) return done(new AppError('invalid_request', problem), undefined);
        // A chat completion's bytes may be forwarded as they came (providers/raw-request.ts): from 1 KiB on,
        // where that is cheaper than serializing the body again (bench/README.md).
        if (
          (body as string).length >= PASS_THROUGH_MIN_CHARS &&
          typeof value === 'object' &&
          value !== null &&
          isChatCompletions(request.url)
        )
          keepRawRequest(value, body as string);
        done(null, value);
      });
    });
  },
  { name: 'json-body', dependencies: ['error-handler'] },
);
