/**
 * A failed upstream call. `retryable` failures (429, 5xx, timeouts, connection errors) may be retried or
 * fall back to another deployment; others (an upstream 400/404…) are relayed to the client as they are.
 */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly details: {
      provider: string;
      /** The upstream HTTP status when there was one. */
      upstreamStatus?: number;
      /** What Colloquy answers: the upstream's 4xx, or 502/503/504. */
      status: number;
      code: string;
      type?: string;
      param?: string | null;
      retryable: boolean;
      retryAfterMs?: number;
      kind?: 'timeout' | 'connection' | 'upstream' | 'protocol' | 'cancelled';
    },
  ) {
    super(message);
    this.name = 'ProviderError';
  }

  get retryable() {
    return this.details.retryable;
  }
}

export function parseRetryAfter(value: string | string[] | undefined | null): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(raw);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : undefined;
}

/** Maps an upstream HTTP error to what Colloquy answers and whether another attempt may help. */
export function upstreamHttpError(
  provider: string,
  status: number,
  body: unknown,
  retryAfter?: string | string[] | null,
): ProviderError {
  type ErrorFields = { message?: unknown; type?: string; code?: string | null; param?: string | null };
  const top = body as (ErrorFields & { error?: ErrorFields; object?: string }) | null;
  // OpenAI's shape is `{ error: {…} }`; Mistral's is `{ object: "error", message, type, code }` at the top,
  // with a validation failure's `message` an object of details.
  const raw = top?.error ?? (top?.object === 'error' ? top : undefined);
  const err = raw && {
    ...raw,
    message:
      typeof raw.message === 'string'
        ? raw.message
        : raw.message
          ? JSON.stringify(raw.message).slice(0, 500)
          : undefined,
    code: typeof raw.code === 'string' ? raw.code : null,
  };
  const message =
    typeof err?.message === 'string' ? err.message : `upstream ${provider} answered HTTP ${status}`;
  if (status === 401 || status === 403) {
    // The upstream refused Colloquy's own key or account: a server-side fault. Relaying the 401/403 would
    // tell the client that its (valid) Colloquy credentials are wrong.
    return new ProviderError(`upstream ${provider} refused Colloquy's credentials: ${message}`, {
      provider,
      upstreamStatus: status,
      status: 502,
      code: status === 401 ? 'upstream_auth_failed' : 'upstream_permission_denied',
      type: 'server_error',
      param: null,
      retryable: false,
      kind: 'upstream',
    });
  }
  const retryable = status === 429 || status === 408 || status >= 500;
  // 503 and 504 keep their meaning (and Retry-After) for clients; other upstream 5xx are a bad gateway.
  const mappedStatus =
    status === 429 || status === 503 || status === 504 ? status : status >= 500 ? 502 : status;
  return new ProviderError(message, {
    provider,
    upstreamStatus: status,
    status: mappedStatus,
    code:
      typeof err?.code === 'string'
        ? err.code
        : status === 429
          ? 'upstream_rate_limited'
          : status >= 500
            ? 'upstream_error'
            : 'upstream_invalid_request',
    type: err?.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error'),
    param: err?.param ?? null,
    retryable,
    retryAfterMs: parseRetryAfter(retryAfter),
    kind: 'upstream',
  });
}

export const timeoutError = (provider: string, what: string, ms: number) =>
  new ProviderError(`upstream ${provider} timed out: ${what} exceeded ${ms} ms`, {
    provider,
    status: 504,
    code: 'upstream_timeout',
    type: 'server_error',
    retryable: true,
    kind: 'timeout',
  });

export const connectionError = (provider: string, cause: unknown) =>
  new ProviderError(`could not reach upstream ${provider}: ${(cause as Error)?.message ?? cause}`, {
    provider,
    status: 502,
    code: 'upstream_unreachable',
    type: 'server_error',
    retryable: true,
    kind: 'connection',
  });

export const protocolError = (provider: string, message: string) =>
  new ProviderError(`upstream ${provider} sent an invalid response: ${message}`, {
    provider,
    status: 502,
    code: 'upstream_bad_response',
    type: 'server_error',
    retryable: true,
    kind: 'protocol',
  });
