import { createRequire } from 'node:module';
import type { AnyValueMap } from '@opentelemetry/api-logs';
import type { DestinationStream } from 'pino';
import { VERSION } from '../version.js';

// The OpenTelemetry logs SDK is loaded only when OTEL_LOGS_EXPORTER=otlp (createLogger is synchronous, and a
// server that does not export logs need not hold it).
const require = createRequire(import.meta.url);

export interface OtlpLogOptions {
  /** OTLP/HTTP base URL, e.g. http://otel-collector:4318 (records go to <endpoint>/v1/logs). */
  endpoint: string;
  serviceName: string;
  track: string;
}

export interface OtlpLogStream {
  stream: DestinationStream;
  /** Sends what is batched and stops: called when the server has stopped. */
  shutdown(): Promise<void>;
}

/**
 * OTEL_LOGS_EXPORTER=otlp: every log line also goes out as an OpenTelemetry log record over OTLP/HTTP, next to
 * the traces, with the same resource (service.name, service.version, deployment.track) and the trace and span
 * ids of the request's span, so a collector puts logs and traces side by side. Severity follows the logs data
 * model (https://opentelemetry.io/docs/specs/otel/logs/data-model/#field-severitynumber). The line is taken
 * after pino has redacted and scrubbed it: the exporter sees nothing stdout would not.
 */
export function createOtlpLogStream(options: OtlpLogOptions): OtlpLogStream {
  const { LoggerProvider, BatchLogRecordProcessor } =
    require('@opentelemetry/sdk-logs') as typeof import('@opentelemetry/sdk-logs');
  const { OTLPLogExporter } =
    require('@opentelemetry/exporter-logs-otlp-http') as typeof import('@opentelemetry/exporter-logs-otlp-http');
  const { resourceFromAttributes } =
    require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const api = require('@opentelemetry/api') as typeof import('@opentelemetry/api');

  const provider = new LoggerProvider({
    resource: resourceFromAttributes({
      'service.name': options.serviceName,
      'service.version': VERSION,
      'deployment.track': options.track,
    }),
    processors: [
      new BatchLogRecordProcessor({
        exporter: new OTLPLogExporter({ url: `${options.endpoint.replace(/\/+$/, '')}/v1/logs` }),
        // A collector that is down must not grow memory: past 2048 waiting records, new ones are dropped.
        maxQueueSize: 2048,
        scheduledDelayMillis: 1000,
      }),
    ],
  });
  const otelLogger = provider.getLogger('colloquy', VERSION);

  const stream: DestinationStream = {
    write(line: string) {
      let fields: Record<string, unknown>;
      try {
        fields = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const record = toRecord(fields);
      const traceId = record.traceId;
      const spanId = record.spanId;
      otelLogger.emit({
        timestamp: record.timeMs,
        observedTimestamp: Date.now(),
        severityNumber: record.severity[0],
        severityText: record.severity[1],
        body: record.body,
        attributes: record.attributes,
        ...(traceId && spanId
          ? {
              context: api.trace.setSpanContext(api.ROOT_CONTEXT, {
                traceId,
                spanId,
                traceFlags: api.TraceFlags.SAMPLED,
              }),
            }
          : {}),
      });
    },
  };
  return { stream, shutdown: () => provider.shutdown() };
}

/** pino's numeric levels and their names → (SeverityNumber, SeverityText) of the logs data model. */
const SEVERITY: Record<string, [number, string]> = {
  10: [1, 'TRACE'],
  20: [5, 'DEBUG'],
  30: [9, 'INFO'],
  40: [13, 'WARN'],
  50: [17, 'ERROR'],
  60: [21, 'FATAL'],
  trace: [1, 'TRACE'],
  debug: [5, 'DEBUG'],
  info: [9, 'INFO'],
  warn: [13, 'WARN'],
  error: [17, 'ERROR'],
  fatal: [21, 'FATAL'],
};

/** Fields of a line that become the record's own fields rather than attributes (JSON and ECS names). */
const OWN = [
  'time',
  '@timestamp',
  'level',
  'log.level',
  'msg',
  'message',
  'trace_id',
  'trace.id',
  'span_id',
  'span.id',
];

/** A pino line (LOG_FORMAT json or ecs) as the parts of a log record. Exported for the tests. */
export function toRecord(fields: Record<string, unknown>) {
  const time = fields.time ?? fields['@timestamp'];
  const timeMs = typeof time === 'number' ? time : typeof time === 'string' ? Date.parse(time) : Date.now();
  const severity = SEVERITY[String(fields.level ?? fields['log.level'])] ?? [0, 'UNSPECIFIED'];
  const body = String(fields.msg ?? fields.message ?? '');
  const traceId = hexId(fields.trace_id ?? fields['trace.id'], 32);
  const spanId = hexId(fields.span_id ?? fields['span.id'], 16);
  const attributes: AnyValueMap = {};
  for (const [key, value] of Object.entries(fields)) {
    if (OWN.includes(key) || value === undefined || value === null) continue;
    // Nested objects (err, req, res) keep their shape: OTLP attributes may be maps (AnyValue kvlistValue).
    attributes[key] = value as AnyValueMap[string];
  }
  return {
    timeMs: Number.isFinite(timeMs) ? timeMs : Date.now(),
    severity,
    body,
    traceId,
    spanId,
    attributes,
  };
}

function hexId(value: unknown, length: number): string | undefined {
  return typeof value === 'string' && value.length === length && /^[0-9a-f]+$/.test(value)
    ? value
    : undefined;
}
