import { ProviderError, upstreamHttpError } from '../errors.js';
import type { HttpErrorMapper } from '../http.js';

/**
 * Azure OpenAI's error answers (https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter):
 * a prompt its content filter refuses is HTTP 400 with `error.code: "content_filter"` and
 * `error.innererror: { code: "ResponsibleAIPolicyViolation", content_filter_result: { hate: { filtered,
 * severity }, jailbreak: { filtered, detected }, … } }`. Throttling is 429 with `retry-after` and the more
 * precise `retry-after-ms`; auth failures carry the status as their code ("401").
 */
interface AzureErrorBody {
  error?: {
    message?: string;
    type?: string | null;
    code?: string | number | null;
    param?: string | null;
    innererror?: { code?: string; content_filter_result?: Record<string, FilterVerdict> };
  };
}

interface FilterVerdict {
  filtered?: boolean;
  severity?: string;
  detected?: boolean;
}

export const azureErrorMapper =
  (provider: string): HttpErrorMapper =>
  (status, text, header) => {
    let body: AzureErrorBody | null = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = { error: { message: text.slice(0, 500) || undefined } };
    }
    const error = body?.error;
    if (error && isContentFilter(error)) return contentFiltered(provider, status, error);
    // Azure's codes for auth and throttling are the status itself ("401", "429"): not a code a client can use.
    const code = typeof error?.code === 'string' && !/^\d+$/.test(error.code) ? error.code : undefined;
    const mapped = upstreamHttpError(
      provider,
      status,
      { error: { ...error, code, type: error?.type ?? undefined } },
      header('retry-after'),
    );
    const retryAfterMs = parseRetryAfterMs(header('retry-after-ms'));
    if (retryAfterMs === undefined) return mapped;
    return new ProviderError(mapped.message, { ...mapped.details, retryAfterMs });
  };

function isContentFilter(error: AzureErrorBody['error']): boolean {
  return error?.code === 'content_filter' || error?.innererror?.code === 'ResponsibleAIPolicyViolation';
}

/** A refused prompt is the client's to change: 400 `content_filtered`, never retried nor failed over. */
export function contentFiltered(
  provider: string,
  status: number | undefined,
  error: NonNullable<AzureErrorBody['error']>,
): ProviderError {
  const verdicts = Object.entries(error.innererror?.content_filter_result ?? {})
    .filter(([, v]) => v?.filtered)
    .map(([category, v]) => (v.severity ? `${category}: ${v.severity}` : category));
  const categories = verdicts.length ? ` (${verdicts.join(', ')})` : '';
  return new ProviderError(
    `the prompt was refused by the content filter of upstream ${provider}${categories}; change the prompt, do not retry it`,
    {
      provider,
      ...(status === undefined ? {} : { upstreamStatus: status }),
      status: 400,
      code: 'content_filtered',
      type: 'invalid_request_error',
      param: 'messages',
      retryable: false,
      kind: 'upstream',
    },
  );
}

/** In-stream errors: a content-filter error mid-stream is still the prompt's fault, not the upstream's. */
export const azureStreamError = (provider: string) => (error: Record<string, unknown>) =>
  isContentFilter(error as AzureErrorBody['error'])
    ? contentFiltered(provider, undefined, error as NonNullable<AzureErrorBody['error']>)
    : undefined;

function parseRetryAfterMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Number(value);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}
