/** What is known of the request that failed: ids only, never its body or headers. */
export interface RequestErrorTags {
  request_id: string;
  /** The route pattern (`/v1/conversations/:id`), never the URL with its ids. */
  route: string;
  method: string;
  status: number;
  code: string;
  user_id?: string | undefined;
  api_key_id?: string | undefined;
  /** The request's OpenTelemetry trace id when tracing is on, to find its spans next to the error. */
  trace_id?: string | undefined;
}

/**
 * Where 5xx answers and crashes are reported (Sentry or a Sentry-compatible server). Absent when
 * SENTRY_DSN is unset: the SDK is then never loaded.
 */
export interface ErrorReporter {
  captureRequestError(err: unknown, tags: RequestErrorTags): void;
  /** Sends what is queued, waiting at most `timeoutMs`, and stops reporting. */
  close(timeoutMs: number): Promise<void>;
}

export interface ErrorTrackingConfig {
  dsn: string;
  environment: string;
  release: string;
  track: string;
  /** The share of errors sent, 0 to 1. */
  sampleRate: number;
  tracesSampleRate: number;
  /** Values never sent, wherever they appear (Colloquy's secrets and provider credentials). */
  secrets: readonly string[];
}
