import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import Type from 'typebox';
import { AppError, type ErrorBody } from '../core/errors.js';
import type { ErrorReporter } from '../error-tracking/reporter.js';
import { ProviderError } from '../providers/errors.js';

/** The error shape of every route: OpenAI's, so `/v1` clients and everyone else parse one format. */
export const ErrorSchema = Type.Object(
  {
    error: Type.Object({
      message: Type.String(),
      type: Type.String(),
      code: Type.String(),
      param: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  { $id: 'Error', description: 'An error, in the OpenAI error shape' },
);

const FASTIFY_CODES: Record<string, AppError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
};

/**
 * Storage failures that say nothing about the request: a connection refused, dropped or timed out (PostgreSQL
 * restarting, paused or overloaded), SQLite locked or failing to write. A failed transaction was rolled back,
 * so the client may retry (only a COMMIT cut off on its way back is ambiguous: Idempotency-Key covers it).
 */
function isDatabaseUnavailable(err: { code?: unknown; message?: string; syscall?: unknown }): boolean {
  const code = String(err.code ?? '');
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND'].includes(code) ||
    // PostgreSQL's Unix socket is gone (the server stopped, its socket directory removed): `connect ENOENT`.
    // Only on connect: any other ENOENT is a bug of ours.
    (code === 'ENOENT' && (err.syscall === 'connect' || /^connect ENOENT/.test(err.message ?? ''))) ||
    code.startsWith('SQLITE_BUSY') ||
    code.startsWith('SQLITE_IOERR') || // disk I/O failures, also ENOSPC while growing the WAL or shm
    // The database file (or its directory) was removed or moved away under the running server.
    code.startsWith('SQLITE_CANTOPEN') ||
    code === 'SQLITE_READONLY_DBMOVED' ||
    // SQLSTATE classes: 08 connection exceptions; 53 insufficient resources (too many connections, out of
    // memory, disk full); 57P admin or crash shutdown, cannot connect now; 57014 statement_timeout;
    // 3D000 the database does not exist (dropped, or DATABASE_URL names another one).
    /^(?:08[0-9A-Z]{3}|53[0-9A-Z]{3}|57P[0-9A-Z]{2}|57014|3D000)$/.test(code) ||
    /timeout exceeded when trying to connect|Connection terminated|Query read timeout|not queryable/i.test(
      err.message ?? '',
    )
  );
}

/**
 * The driver's error, or the one inside it: Node's connect to a name with several addresses (localhost: ::1 and
 * 127.0.0.1) fails with an AggregateError of one refusal per address, and a wrapped error keeps its `cause`.
 */
function storageFailure(err: unknown, depth = 0): { code?: unknown; message?: string } | undefined {
  if (!err || typeof err !== 'object' || depth > 3) return undefined;
  const e = err as { code?: unknown; message?: string; errors?: unknown[]; cause?: unknown };
  if (isDatabaseUnavailable(e) || isStorageFull(e)) return e;
  for (const inner of Array.isArray(e.errors) ? e.errors : []) {
    const found = storageFailure(inner, depth + 1);
    if (found) return found;
  }
  return storageFailure(e.cause, depth + 1);
}

/** The database cannot grow: SQLite's disk (or max_page_count) is full, or PostgreSQL's (SQLSTATE 53100). */
const isStorageFull = (err: { code?: unknown }) => err.code === 'SQLITE_FULL' || err.code === '53100';

/** Upstream failures keep the upstream's own code and message (e.g. 404 model_not_found), as OpenAI clients expect. */
export function toErrorResponse(err: FastifyError | ProviderError): {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
} {
  if (err instanceof ProviderError) {
    const { status, code, type, param, retryAfterMs } = err.details;
    // A 503 always tells the client when to come back, even when the upstream did not say (default 1 s).
    const after = retryAfterMs ?? (status === 503 ? 1_000 : undefined);
    const headers: Record<string, string> =
      after !== undefined && (status === 429 || status === 503)
        ? { 'retry-after': String(Math.max(1, Math.ceil(after / 1000))) }
        : {};
    return {
      status,
      headers,
      body: { error: { message: err.message, type: type ?? 'server_error', code, param: param ?? null } },
    };
  }
  const appError = toAppError(err);
  return { status: appError.status, body: appError.toBody(), headers: appError.options.headers ?? {} };
}

export function toAppError(err: FastifyError): AppError {
  if (err instanceof AppError) return err;
  if (err.validation) {
    const first = err.validation[0];
    const params = first?.params as { missingProperty?: string; additionalProperty?: string } | undefined;
    const missing = params?.missingProperty;
    const unknown = params?.additionalProperty;
    const path = (first?.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    const field = missing ?? unknown;
    const param = field !== undefined ? [path, field].filter(Boolean).join('.') : path || undefined;
    const where = err.validationContext ?? 'request';
    const message = missing
      ? `${where}: '${param}' is required`
      : unknown !== undefined
        ? `${where}: unknown field '${param}'`
        : `${where}${param ? `.${param}` : ''} ${first?.message ?? 'is invalid'}`;
    return new AppError('validation_error', message, param ? { param } : {});
  }
  const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (mapped) return new AppError(mapped, err.message);
  // PostgreSQL refuses NUL characters in text (SQLSTATE 22021 / 22P05): the client's input, not our fault.
  if (err.code === '22021' || err.code === '22P05') {
    return new AppError('invalid_request', 'text must not contain NUL characters or invalid encoding');
  }
  const storage = storageFailure(err) ?? err;
  if (isStorageFull(storage)) {
    return new AppError('storage_full', 'the database disk is full; reads still work, retry writes later', {
      headers: { 'retry-after': '30' },
      cause: err,
    });
  }
  if (isDatabaseUnavailable(storage)) {
    return new AppError('database_unavailable', 'the database is unavailable; retry shortly', {
      headers: { 'retry-after': '5' },
      cause: err,
    });
  }
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError(err.statusCode === 404 ? 'not_found' : 'invalid_request', err.message);
  }
  return new AppError('internal_error', 'internal server error', { cause: err });
}

/**
 * A call cancelled because the drain period ended (not because the client left) before anything was sent: the
 * client is still there and gets a 503 it may retry on another replica, not the 499 of a client that went away.
 */
const cancelledByShutdown = (err: unknown, app: FastifyInstance) =>
  err instanceof ProviderError &&
  err.details.kind === 'cancelled' &&
  (app as { shutdownSignal?: AbortSignal }).shutdownSignal?.aborted === true;

const shuttingDown = (cause: unknown) =>
  new AppError('service_unavailable', 'the server is shutting down; retry on another instance', {
    headers: { 'retry-after': '1' },
    cause,
  }) as AppError & FastifyError;

/** One place renders every error; routes throw AppError and never build error bodies themselves. */
export const errorHandlerPlugin = fp(
  async (app: FastifyInstance, options: { reporter?: ErrorReporter | undefined }) => {
    app.addSchema(ErrorSchema);
    app.setErrorHandler((err: FastifyError, request, reply) => {
      const { status, body, headers } = toErrorResponse(
        cancelledByShutdown(err, request.server) ? shuttingDown(err) : err,
      );
      // A feature the operator did not configure (mail) is not a fault: neither logged as one nor reported.
      const fault = status >= 500 && body.error.code !== 'mail_not_configured';
      if (fault && !(err instanceof ProviderError)) request.log.error({ err }, 'request failed');
      else request.log.info({ code: body.error.code, status }, body.error.message);
      // Every 5xx answer is reported, with ids only (the principal's, the request's, its trace's).
      if (fault && options.reporter) {
        options.reporter.captureRequestError(err, {
          request_id: request.id,
          route: request.routeOptions.url ?? 'unmatched',
          method: request.method,
          status,
          code: body.error.code,
          user_id: request.principal?.userId ?? undefined,
          api_key_id: request.principal?.apiKeyId ?? undefined,
          trace_id: request.span?.spanContext().traceId,
        });
      }
      return reply.code(status).headers(headers).send(body);
    });
    app.setNotFoundHandler((request, reply) => {
      reply
        .code(404)
        .send(
          new AppError(
            'route_not_found',
            `no route for ${request.method} ${request.url.split('?')[0]}`,
          ).toBody(),
        );
    });
  },
  { name: 'error-handler' },
);
