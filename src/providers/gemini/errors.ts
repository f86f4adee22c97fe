import { ProviderError, upstreamHttpError } from '../errors.js';
import type { HttpErrorMapper } from '../http.js';

/**
 * Google's error answers (https://ai.google.dev/gemini-api/docs/troubleshooting,
 * https://cloud.google.com/apis/design/errors): `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED",
 * "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}, …]}}`. The status names
 * the kind (INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED, NOT_FOUND,
 * RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED); RetryInfo says when to come back.
 */
interface GoogleErrorBody {
  error?: {
    code?: number;
    message?: string;
    status?: string;
    details?: { '@type'?: string; retryDelay?: string; reason?: string }[];
  };
}

export const googleErrorMapper =
  (provider: string): HttpErrorMapper =>
  (upstreamStatus, text, header) => {
    let body: GoogleErrorBody | GoogleErrorBody[] | null = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = { error: { message: text.slice(0, 500) || undefined } };
    }
    // A stream's error may come as a one-element array (the JSON-array framing without alt=sse).
    const error = (Array.isArray(body) ? body[0] : body)?.error;
    const googleStatus = typeof error?.status === 'string' ? error.status : undefined;
    // A wrong Gemini API key is a 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID: Colloquy's own
    // credentials, not the client's request, so it is read as a 401.
    const badKey = error?.details?.some((d) => d.reason === 'API_KEY_INVALID');
    const status = badKey ? 401 : upstreamStatus;
    const code =
      status === 429 || googleStatus === 'RESOURCE_EXHAUSTED'
        ? 'upstream_rate_limited'
        : status === 404 || googleStatus === 'NOT_FOUND'
          ? 'model_not_found'
          : status >= 500
            ? 'upstream_error'
            : status === 400
              ? 'upstream_invalid_request'
              : undefined;
    const mapped = upstreamHttpError(
      provider,
      status,
      { error: { message: error?.message, code, type: googleStatus?.toLowerCase(), param: null } },
      header('retry-after'),
    );
    const retryDelay = error?.details?.find((d) => d['@type']?.endsWith('google.rpc.RetryInfo'))?.retryDelay;
    const retryAfterMs = parseDuration(retryDelay) ?? mapped.details.retryAfterMs;
    return new ProviderError(mapped.message, {
      ...mapped.details,
      upstreamStatus,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(status === 404 ? { param: 'model' } : {}),
    });
  };

/** A protobuf Duration in JSON: "37s", "1.5s". */
function parseDuration(value: string | undefined): number | undefined {
  const match = value ? /^(\d+(?:\.\d+)?)s$/.exec(value) : null;
  return match ? Math.round(Number(match[1]) * 1000) : undefined;
}

/**
 * A prompt Gemini refused (`promptFeedback.blockReason`), or an answer stopped by a safety / recitation / policy
 * finish reason before anything was produced: the client must change the prompt. 400 `content_filtered`, never
 * retried nor failed over (another deployment of the same model refuses the same prompt).
 */
export function contentFiltered(provider: string, what: string): ProviderError {
  return new ProviderError(
    `upstream ${provider} refused the request (${what}); change the prompt, do not retry it`,
    {
      provider,
      status: 400,
      code: 'content_filtered',
      type: 'invalid_request_error',
      param: 'messages',
      retryable: false,
      kind: 'upstream',
    },
  );
}
