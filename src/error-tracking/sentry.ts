import * as Sentry from '@sentry/node-core/light';
import type { ErrorReporter, ErrorTrackingConfig, RequestErrorTags } from './reporter.js';
import { scrubEvent } from './scrub.js';

/**
 * Sentry's official Node SDK in its "light" form (`@sentry/node-core/light`): the client, transport and
 * process handlers without OpenTelemetry, so Colloquy's own tracer provider and OTLP export stay untouched
 * (no global tracer, context manager or propagator is registered). Only integrations that collect nothing
 * from requests are enabled: no HTTP/fetch/console breadcrumbs, no request data, no local variables.
 * Loaded (dynamic import) only when SENTRY_DSN is set.
 */
export function startSentry(config: ErrorTrackingConfig): ErrorReporter {
  const scrub = <T extends object>(event: T) => scrubEvent(event, config.secrets);
  const client = Sentry.init({
    dsn: config.dsn,
    environment: config.environment,
    release: config.release,
    sampleRate: config.sampleRate,
    tracesSampleRate: config.tracesSampleRate,
    sendDefaultPii: false,
    sendClientReports: false,
    defaultIntegrations: false,
    integrations: [
      Sentry.eventFiltersIntegration(),
      Sentry.functionToStringIntegration(),
      Sentry.linkedErrorsIntegration(),
      Sentry.nodeContextIntegration(),
      // A crash is reported, flushed (bounded by shutdownTimeout) and the process still exits with code 1,
      // as it does without Sentry: 'strict' keeps Node's default of dying on an unhandled rejection.
      Sentry.onUncaughtExceptionIntegration(),
      Sentry.onUnhandledRejectionIntegration({ mode: 'strict' }),
    ],
    shutdownTimeout: 2_000,
    initialScope: { tags: { track: config.track, release: config.release } },
    beforeSend: (event) => scrub(event),
    beforeSendTransaction: (event) => scrub(event),
    // No integration records breadcrumbs; any that appears would carry URLs or log text: none are kept.
    beforeBreadcrumb: () => null,
  });
  return {
    captureRequestError(err: unknown, tags: RequestErrorTags) {
      const { user_id, api_key_id, ...rest } = tags;
      Sentry.captureException(err, {
        level: 'error',
        tags: {
          // Tag values are strings in Sentry's event schema.
          ...Object.fromEntries(
            Object.entries(rest)
              .filter(([, v]) => v !== undefined)
              .map(([k, v]) => [k, String(v)]),
          ),
          ...(user_id ? { user_id } : {}),
          ...(api_key_id ? { api_key_id } : {}),
        },
        ...(user_id ? { user: { id: user_id } } : {}),
        ...(tags.trace_id ? { contexts: { otel: { trace_id: tags.trace_id } } } : {}),
      });
    },
    async close(timeoutMs: number) {
      await client?.close(timeoutMs);
    },
  };
}
