import { ProviderError, parseRetryAfter, upstreamHttpError } from '../errors.js';
import type { HttpErrorMapper } from '../http.js';

/**
 * Bedrock Runtime's errors (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors):
 * the type in the `x-amzn-ErrorType` header (`ThrottlingException:http://internal.amazon.com/…`, the part
 * before `:`) or the body's `__type`, the text in the body's `message` (or `Message`). Stream exceptions
 * carry the same types in lower camel case (`throttlingException`) as `:exception-type`.
 */
export function bedrockError(
  provider: string,
  errorType: string,
  message: string,
  upstreamStatus: number | undefined,
  retryAfter?: string,
): ProviderError {
  const type = errorType.charAt(0).toUpperCase() + errorType.slice(1);
  const make = (
    status: number,
    code: string,
    retryable: boolean,
    kind = 'server_error',
    param: string | null = null,
  ) =>
    new ProviderError(message, {
      provider,
      ...(upstreamStatus === undefined ? {} : { upstreamStatus }),
      status,
      code,
      type: kind,
      param,
      retryable,
      ...(parseRetryAfter(retryAfter) === undefined ? {} : { retryAfterMs: parseRetryAfter(retryAfter) }),
      kind: 'upstream',
    });
  switch (type) {
    case 'AccessDeniedException':
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
    case 'IncompleteSignatureException':
    case 'MissingAuthenticationTokenException':
      // Colloquy's own AWS credentials were refused: a server-side fault, never the client's key (502).
      return new ProviderError(`upstream ${provider} refused Colloquy's credentials (${type}): ${message}`, {
        provider,
        ...(upstreamStatus === undefined ? {} : { upstreamStatus }),
        status: 502,
        code: type === 'AccessDeniedException' ? 'upstream_permission_denied' : 'upstream_auth_failed',
        type: 'server_error',
        param: null,
        retryable: false,
        kind: 'upstream',
      });
    case 'ThrottlingException':
      return make(429, 'upstream_rate_limited', true, 'rate_limit_error');
    case 'ServiceQuotaExceededException':
      return make(429, 'upstream_quota_exceeded', false, 'rate_limit_error');
    case 'ValidationException':
      return make(
        400,
        /too long|too many (input )?tokens|context (window|length)/i.test(message)
          ? 'context_length_exceeded'
          : 'upstream_invalid_request',
        false,
        'invalid_request_error',
      );
    case 'ResourceNotFoundException':
      return make(404, 'model_not_found', false, 'invalid_request_error', 'model');
    case 'ModelNotReadyException':
    case 'ServiceUnavailableException':
      return make(503, 'upstream_unavailable', true);
    case 'ModelTimeoutException':
      return make(504, 'upstream_timeout', true);
    case 'InternalServerException':
    case 'ModelStreamErrorException':
    case 'ModelErrorException':
      return make(502, 'upstream_error', true);
    default:
      return upstreamHttpError(
        provider,
        upstreamStatus ?? 502,
        { error: { message, code: null } },
        retryAfter,
      );
  }
}

export const bedrockErrorMapper =
  (provider: string): HttpErrorMapper =>
  (status, text, header) => {
    let body: { message?: unknown; Message?: unknown; __type?: unknown } = {};
    try {
      body = JSON.parse(text) ?? {};
    } catch {
      body = { message: text.slice(0, 500) };
    }
    const rawType = header('x-amzn-errortype') ?? (typeof body.__type === 'string' ? body.__type : '');
    // "ThrottlingException:http://internal.amazon.com/coral/…" or "com.amazon.coral#ThrottlingException".
    const type = rawType.split(':')[0]!.split('#').pop() ?? '';
    const said =
      typeof body.message === 'string' ? body.message : typeof body.Message === 'string' ? body.Message : '';
    const message = said || `upstream ${provider} answered HTTP ${status}${type ? ` (${type})` : ''}`;
    if (type) return bedrockError(provider, type, message, status, header('retry-after'));
    return bedrockError(provider, STATUS_TYPES[status] ?? '', message, status, header('retry-after'));
  };

/** For answers without a type (a proxy's): the type Bedrock documents for the status. */
const STATUS_TYPES: Record<number, string> = {
  400: 'ValidationException',
  403: 'AccessDeniedException',
  404: 'ResourceNotFoundException',
  429: 'ThrottlingException',
  503: 'ServiceUnavailableException',
};
