import {
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { UsageEvent } from '../features/usage/store.js';
import { VERSION } from '../version.js';

export interface TracingOptions {
  /** OTLP/HTTP base URL, e.g. http://otel-collector:4318 (spans go to <endpoint>/v1/traces). */
  endpoint: string;
  serviceName: string;
  track: string;
}

/**
 * OpenTelemetry traces, exported over OTLP/HTTP when an endpoint is configured: one server span per HTTP
 * request and one client span per model call with the GenAI semantic conventions (gen_ai.*). The request id
 * is on every span (`colloquy.request_id`), in every log line and in the X-Request-Id header, so one id
 * ties the three together. No global registration: spans are parented explicitly.
 */
export class Tracing {
  readonly #provider: NodeTracerProvider;
  readonly tracer: Tracer;
  /** Server spans of requests in flight (kept a little after they end, for late children such as usage). */
  readonly #byRequest = new Map<string, Span>();

  constructor(options: TracingOptions) {
    this.#provider = new NodeTracerProvider({
      resource: resourceFromAttributes({
        'service.name': options.serviceName,
        'service.version': VERSION,
        'deployment.track': options.track,
      }),
      spanProcessors: [
        new BatchSpanProcessor(
          new OTLPTraceExporter({ url: `${options.endpoint.replace(/\/+$/, '')}/v1/traces` }),
        ),
      ],
    });
    this.tracer = this.#provider.getTracer('colloquy', VERSION);
  }

  startRequest(requestId: string, method: string, path: string): Span {
    const span = this.tracer.startSpan(
      `${method} ${path}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': method, 'url.path': path, 'colloquy.request_id': requestId },
      },
      ROOT_CONTEXT,
    );
    this.#byRequest.set(requestId, span);
    return span;
  }

  endRequest(requestId: string, span: Span, method: string, statusCode: number, route: string | undefined) {
    span.setAttribute('http.response.status_code', statusCode);
    if (route) {
      // Named by route template (low cardinality), as the HTTP semantic conventions ask.
      span.setAttribute('http.route', route);
      span.updateName(`${method} ${route}`);
    }
    if (statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
    // Usage of a stream is recorded just after the response closes: keep the parent findable briefly.
    setTimeout(() => this.#byRequest.delete(requestId), 5_000).unref();
  }

  /** A model call, recorded when it ends (its timing comes from the usage event). */
  recordLlmCall(event: UsageEvent) {
    const parent = this.#byRequest.get(event.requestId);
    const end = Date.now();
    const start = end - (event.latencyMs ?? 0);
    const model = event.route?.requestedModel ?? event.model;
    const span = this.tracer.startSpan(
      `chat ${model}`,
      {
        kind: SpanKind.CLIENT,
        startTime: start,
        attributes: {
          'gen_ai.operation.name': 'chat',
          'gen_ai.provider.name': event.route?.provider ?? 'none',
          'gen_ai.system': event.route?.provider ?? 'none',
          'gen_ai.request.model': model,
          ...(event.route ? { 'gen_ai.response.model': event.route.upstreamModel } : {}),
          'gen_ai.usage.input_tokens': event.usage?.prompt_tokens ?? 0,
          'gen_ai.usage.output_tokens': event.usage?.completion_tokens ?? 0,
          'colloquy.request_id': event.requestId,
          'colloquy.deployment': event.route?.deployment ?? '',
          'colloquy.attempts': event.route?.attempts ?? 0,
          'colloquy.fallback': event.route?.fallback ?? false,
          'colloquy.cached': event.cached ?? false,
          'colloquy.status': event.status,
          ...(event.ttftMs !== undefined
            ? { 'colloquy.time_to_first_token_ms': Math.round(event.ttftMs) }
            : {}),
        },
      },
      parent ? trace.setSpan(context.active(), parent) : ROOT_CONTEXT,
    );
    if (event.status !== 'ok') span.setStatus({ code: SpanStatusCode.ERROR, message: event.status });
    span.end(end);
  }

  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}
