import type { DestinationStream, LoggerOptions as PinoOptions } from 'pino';

/**
 * LOG_FORMAT=ecs: every line in Elastic Common Schema (ECS 8) field names, so Elasticsearch / OpenSearch
 * (and Kibana's Logs app), Loki and any ECS-aware collector take Colloquy's lines with no parsing rules.
 * Dotted keys are ECS's own JSON form (Elasticsearch expands them). The mapping, also in docs/logging.md:
 *
 *   time → @timestamp (ISO 8601)      level → log.level (info, error…)   msg → message
 *   pid → process.pid                 hostname → host.hostname           reqId → http.request.id
 *   trace_id → trace.id               span_id → span.id
 *   err → error.type, error.message, error.stack_trace (secrets scrubbed as in JSON logs)
 *   req → http.request.method, url.original, client.address, user_agent.original (no other header)
 *   res → http.response.status_code    responseTime (ms) → event.duration (ns)
 *   always: ecs.version, service.name = colloquy, service.version
 *
 * Every other field keeps its name (ECS allows custom fields); field redaction applies as in JSON logs.
 */
export const ECS_VERSION = '8.11.0';

type Serializer = (value: never) => unknown;

export function ecsPinoOptions(
  serializers: Record<string, Serializer>,
  service: { version: string },
): Pick<PinoOptions, 'messageKey' | 'timestamp' | 'formatters'> {
  const serialize = (name: string, value: unknown) =>
    serializers[name] ? (serializers[name] as (v: unknown) => unknown)(value) : value;
  return {
    messageKey: 'message',
    timestamp: () => `,"@timestamp":"${new Date().toISOString()}"`,
    formatters: {
      level: (label) => ({ 'log.level': label }),
      // The root logger's bindings and every child's (a request's reqId, a span's trace_id).
      bindings: (bindings) => {
        const { pid, hostname, ...rest } = bindings;
        const out = renameCommon(rest);
        if (pid !== undefined) out['process.pid'] = pid;
        if (hostname !== undefined) out['host.hostname'] = hostname;
        if (pid !== undefined || hostname !== undefined) {
          out['ecs.version'] = ECS_VERSION;
          out['service.name'] = 'colloquy';
          out['service.version'] = service.version;
        }
        return out;
      },
      // Runs before pino's serializers, so the scrubbing ones are applied here, then mapped.
      log: (object) => {
        const { err, error, req, res, responseTime, ...rest } = object as Record<string, unknown>;
        const out = renameCommon(rest);
        const failure = err ?? (error instanceof Error ? error : undefined);
        if (failure !== undefined) Object.assign(out, ecsError(serialize('err', failure)));
        else if (error !== undefined) out.error = error;
        if (req !== undefined) Object.assign(out, ecsRequest(serialize('req', req)));
        if (res !== undefined) {
          const status = (serialize('res', res) as { statusCode?: unknown } | undefined)?.statusCode;
          if (status !== undefined) out['http.response.status_code'] = status;
        }
        if (typeof responseTime === 'number') out['event.duration'] = Math.round(responseTime * 1e6);
        return out;
      },
    },
  };
}

const RENAMED: Record<string, string> = {
  reqId: 'http.request.id',
  trace_id: 'trace.id',
  span_id: 'span.id',
};

function renameCommon(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[RENAMED[key] ?? key] = value;
  return out;
}

function ecsError(err: unknown): Record<string, unknown> {
  if (!err || typeof err !== 'object') return { 'error.message': String(err) };
  const { type, message, stack, code } = err as Record<string, unknown>;
  return {
    ...(type !== undefined ? { 'error.type': type } : {}),
    'error.message': message ?? '',
    ...(stack !== undefined ? { 'error.stack_trace': stack } : {}),
    ...(code !== undefined ? { 'error.code': String(code) } : {}),
  };
}

function ecsRequest(req: unknown): Record<string, unknown> {
  if (!req || typeof req !== 'object') return {};
  const { method, url, remoteAddress, headers } = req as Record<string, unknown>;
  const agent = (headers as Record<string, unknown> | undefined)?.['user-agent'];
  return {
    ...(method !== undefined ? { 'http.request.method': method } : {}),
    ...(url !== undefined ? { 'url.original': url } : {}),
    ...(remoteAddress !== undefined ? { 'client.address': remoteAddress } : {}),
    ...(typeof agent === 'string' ? { 'user_agent.original': agent } : {}),
  };
}

const CHILD_KEYS = /"(reqId|trace_id|span_id)":/;

/**
 * Pino writes a child logger's bindings (a request's reqId, a span's trace_id) without passing them through
 * `formatters.bindings`: the few lines that carry one are renamed here, on their way out.
 */
export function ecsChildBindings(stream: DestinationStream): DestinationStream {
  return {
    write: (line: string) => {
      if (!CHILD_KEYS.test(line)) return stream.write(line);
      const fields = JSON.parse(line) as Record<string, unknown>;
      stream.write(`${JSON.stringify(renameCommon(fields))}\n`);
    },
  };
}
