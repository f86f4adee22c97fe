/**
 * Errors in Anthropic's shape and statuses (https://docs.anthropic.com/en/api/errors):
 * `{"type":"error","error":{"type","message"},"request_id"}`, so Anthropic's SDKs raise their own classes
 * (AuthenticationError, RateLimitError, …) and retry what Anthropic would let them retry.
 */
import type { FastifyError } from 'fastify';
import { toErrorResponse } from '../../plugins/error-handler.js';
import { ProviderError } from '../../providers/errors.js';

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

const UPSTREAM_TYPES = new Set([
  'overloaded_error',
  'api_error',
  'rate_limit_error',
  'invalid_request_error',
]);

/** Colloquy's status → Anthropic's status and error type. */
function classify(status: number): { status: number; type: AnthropicErrorType } {
  if (status === 401) return { status, type: 'authentication_error' };
  if (status === 403) return { status, type: 'permission_error' };
  if (status === 404) return { status, type: 'not_found_error' };
  if (status === 413) return { status, type: 'request_too_large' };
  if (status === 429) return { status, type: 'rate_limit_error' };
  // Load shedding, draining, no healthy deployment, an overloaded upstream: Anthropic's "overloaded".
  if (status === 503 || status === 529) return { status: 529, type: 'overloaded_error' };
  if (status >= 400 && status < 500) return { status: 400, type: 'invalid_request_error' };
  return { status: 500, type: 'api_error' };
}

export interface AnthropicErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: { type: 'error'; error: { type: AnthropicErrorType; message: string }; request_id: string };
}

export function toAnthropicError(
  err: FastifyError | ProviderError,
  requestId: string,
): AnthropicErrorResponse {
  const { status, body, headers } = toErrorResponse(err);
  const mapped = classify(status);
  // An Anthropic upstream's own mid-stream error (overloaded_error…) keeps its type.
  if (err instanceof ProviderError && UPSTREAM_TYPES.has(err.details.code))
    mapped.type = err.details.code as AnthropicErrorType;
  return {
    status: mapped.status,
    // An exhausted budget is not a rate limit that passes: Anthropic's SDKs honour x-should-retry.
    headers: body.error.code === 'budget_exceeded' ? { ...headers, 'x-should-retry': 'false' } : headers,
    body: { type: 'error', error: { type: mapped.type, message: body.error.message }, request_id: requestId },
  };
}
