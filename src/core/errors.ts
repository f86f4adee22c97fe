/**
 * The one registry of error codes. Each code has a stable HTTP status and OpenAI error `type`; clients
 * match on `code`, so a code is never renamed or reused once shipped.
 */
export const ERRORS = {
  invalid_request: { status: 400, type: 'invalid_request_error' },
  validation_error: { status: 400, type: 'invalid_request_error' },
  weak_password: { status: 400, type: 'invalid_request_error' },
  // Text a database cannot hold the same way everywhere: a NUL character (see core/text-normalize.ts).
  invalid_text: { status: 400, type: 'invalid_request_error' },
  // ALLOWED_HOSTS: the request named a host this service does not answer to.
  host_not_allowed: { status: 400, type: 'invalid_request_error' },
  unauthorized: { status: 401, type: 'authentication_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  invalid_token: { status: 401, type: 'authentication_error' },
  invalid_credentials: { status: 401, type: 'authentication_error' },
  forbidden: { status: 403, type: 'permission_error' },
  signup_disabled: { status: 403, type: 'permission_error' },
  // Only told to someone who gave the account's right password: it reveals nothing to a guesser.
  account_disabled: { status: 403, type: 'permission_error' },
  // A self sign-up that has not followed the link of its verification mail yet (REQUIRE_EMAIL_VERIFICATION).
  email_not_verified: { status: 403, type: 'permission_error' },
  // An API key restricted to some models (its allowed_models) asked for another.
  model_not_allowed: { status: 403, type: 'permission_error' },
  // A mailed link's token (reset, verification, invitation) that is unknown, used or expired.
  invalid_mail_token: { status: 400, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'not_found_error' },
  route_not_found: { status: 404, type: 'not_found_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  conflict: { status: 409, type: 'invalid_request_error' },
  generation_in_progress: { status: 409, type: 'invalid_request_error' },
  message_not_resumable: { status: 409, type: 'invalid_request_error' },
  idempotency_key_reused: { status: 422, type: 'invalid_request_error' },
  payload_too_large: { status: 413, type: 'invalid_request_error' },
  // An upstream's content filter (Azure OpenAI's Responsible AI policy) refused the prompt: change it, not retry.
  content_filtered: { status: 400, type: 'invalid_request_error' },
  // A guardrail (issue 22) refused the request or the answer; the message names the guardrail.
  guardrail_blocked: { status: 400, type: 'invalid_request_error' },
  // The request alone is over a tokens-per-minute limit: no wait would let it through.
  exceeds_token_limit: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  too_many_login_attempts: { status: 429, type: 'rate_limit_error' },
  rate_limited: { status: 429, type: 'rate_limit_error' },
  // OpenAI's answer for an exhausted quota: clients must not retry it like a rate limit.
  budget_exceeded: { status: 429, type: 'insufficient_quota' },
  // File uploads (issue 24): over MAX_UPLOAD_SIZE, over the user's quota, not an accepted type by content,
  // a name with nothing left once cleaned, content that cannot be read within its limits, an image sent to a
  // model without vision.
  file_too_large: { status: 413, type: 'invalid_request_error' },
  file_quota_exceeded: { status: 413, type: 'invalid_request_error' },
  unsupported_file_type: { status: 415, type: 'invalid_request_error' },
  invalid_file_name: { status: 400, type: 'invalid_request_error' },
  unreadable_file: { status: 422, type: 'invalid_request_error' },
  model_without_vision: { status: 400, type: 'invalid_request_error' },
  internal_error: { status: 500, type: 'server_error' },
  service_unavailable: { status: 503, type: 'server_error' },
  // A feature that sends mail, on a server without SMTP_HOST: an operator's setting, not a passing outage.
  mail_not_configured: { status: 503, type: 'server_error' },
  // The database refused or dropped the connection, or timed out: nothing was half-done, retry later.
  database_unavailable: { status: 503, type: 'server_error' },
  // The database's disk is full: reads still work, writes come back once an operator frees space.
  storage_full: { status: 503, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorBody {
  error: { message: string; type: string; code: ErrorCode | string; param: string | null };
}

export class AppError extends Error {
  readonly status: number;
  readonly type: string;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly options: { param?: string; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.status = ERRORS[code].status;
    this.type = ERRORS[code].type;
  }

  toBody(): ErrorBody {
    return {
      error: { message: this.message, type: this.type, code: this.code, param: this.options.param ?? null },
    };
  }
}

export const notFound = (what: string) => new AppError('not_found', `${what} not found`);
