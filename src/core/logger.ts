import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import pino, { type DestinationStream, type Logger, type StreamEntry } from 'pino';
import { VERSION } from '../version.js';
import { ecsChildBindings, ecsPinoOptions } from './log-ecs.js';
import { createOtlpLogStream, type OtlpLogOptions } from './log-otlp.js';

// Loaded only when used (a terminal, a log file): a production server logging JSON to stdout never pays
// their memory.
const require = createRequire(import.meta.url);
const loadPretty = () => require('pino-pretty') as typeof import('pino-pretty').PinoPretty;
const loadRotatingFileStream = () => require('rotating-file-stream') as typeof import('rotating-file-stream');
// A CommonJS module exporting the class itself (Node cannot name it in an ESM import).
const SonicBoom = require('sonic-boom') as typeof import('sonic-boom').SonicBoom;

export type { Logger };

export interface LoggerOptions {
  level: string;
  /** `ecs`: JSON with Elastic Common Schema field names (./log-ecs.ts). */
  format: 'pretty' | 'json' | 'ecs';
  file?: string | undefined;
  maxBytes?: number;
  backupCount?: number;
  /** Exact secret values (master key, provider keys…) scrubbed wherever they appear in a message. */
  secrets?: (string | undefined)[];
  /** Tests capture output here instead of stdout. */
  destination?: DestinationStream;
  /** OTEL_LOGS_EXPORTER=otlp: every line also goes out as an OTLP log record (./log-otlp.ts). */
  otlp?: OtlpLogOptions | undefined;
}

/** Field paths pino removes before a line is written. */
const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  ...[
    'password',
    'newPassword',
    'password_hash',
    'passwordHash',
    'token',
    'access_token',
    'refresh_token',
    'accessToken',
    'refreshToken',
    'api_key',
    'apiKey',
    'key',
    'secret',
    'authorization',
    'cookie',
  ].flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
];

/** Secret shapes scrubbed from free text (messages, error strings, URLs): bearer tokens, keys, JWTs. */
const SECRET_PATTERNS: RegExp[] = [
  /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi,
  /\b(ck|sk|sk-ant|rk)-[A-Za-z0-9_-]{8,}/g,
  /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g,
  /((?:password|passwd|pwd|token|secret|api_key|apikey|key)=)[^&\s"']+/gi,
  /(\/\/[^:/@\s]+:)[^@/\s]+(@)/g,
];

export function scrubSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 8) out = out.split(secret).join('[REDACTED]');
  out = out.replace(SECRET_PATTERNS[0]!, '$1 [REDACTED]');
  out = out.replace(SECRET_PATTERNS[1]!, '$1-[REDACTED]');
  out = out.replace(SECRET_PATTERNS[2]!, '[REDACTED_JWT]');
  out = out.replace(SECRET_PATTERNS[3]!, '$1[REDACTED]');
  out = out.replace(SECRET_PATTERNS[4]!, '$1[REDACTED]$2');
  return out;
}

/** Bytes of log lines allowed to wait for a slow stdout; past it lines are dropped, not buffered. */
const LOG_BUFFER_BYTES = 16 << 20;
let dropped = 0;
/** Log lines dropped because stdout could not take them (see LOG_BUFFER_BYTES), since the process started. */
export const droppedLogLines = () => dropped;

const logExporters = new Set<() => Promise<void>>();
/** Sends the log records still batched for OTLP and stops the exporters: the last thing before exit. */
export async function flushLogExport(): Promise<void> {
  const pending = [...logExporters];
  logExporters.clear();
  await Promise.allSettled(pending.map((shutdown) => shutdown()));
}

export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s): s is string => typeof s === 'string' && s.length >= 8);
  const streams: StreamEntry[] = [];
  if (options.destination) {
    streams.push({ level: 'trace', stream: options.destination });
  } else if (options.format === 'pretty') {
    streams.push({
      level: 'trace',
      stream: loadPretty()({
        colorize: process.stdout.isTTY,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    });
  } else {
    // A stdout nobody reads (a stalled log collector, a full pipe) must not grow the server's memory without
    // end: past 16 MiB waiting to be written, lines are dropped and counted (`colloquy_log_lines_dropped_total`).
    streams.push({ level: 'trace', stream: stdoutDestination() });
  }
  if (options.file) streams.push({ level: 'trace', stream: createRotatingFile(options) });
  if (options.otlp) {
    const exporter = createOtlpLogStream(options.otlp);
    logExporters.add(exporter.shutdown);
    streams.push({ level: 'trace', stream: exporter.stream });
  }
  if (options.format === 'ecs') for (const entry of streams) entry.stream = ecsChildBindings(entry.stream);

  const serializers = {
    err: (err: Error) => {
      const serialized = pino.stdSerializers.err(err);
      serialized.message = scrubSecrets(serialized.message ?? '', secrets);
      if (serialized.stack) serialized.stack = scrubSecrets(serialized.stack, secrets);
      return serialized;
    },
    req: (req: Parameters<typeof pino.stdSerializers.req>[0]) => {
      const serialized = pino.stdSerializers.req(req);
      serialized.url = scrubSecrets(serialized.url ?? '', secrets);
      return serialized;
    },
  };
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      serializers,
      ...(options.format === 'ecs' ? ecsPinoOptions(serializers, { version: VERSION }) : {}),
      hooks: {
        // Free-text arguments cannot be redacted by path, so secret shapes are scrubbed from them here.
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) {
            const arg = args[i];
            if (typeof arg === 'string') args[i] = scrubSecrets(arg, secrets);
          }
          method.apply(this, args);
        },
      },
    },
    pino.multistream(streams),
  );
}

/**
 * Asynchronous stdout that survives its reader going away (`serve | head -3`, a log shipper that died).
 * pino.destination() would do, but its sonic-boom (4.x) retries a synchronous flush forever on EPIPE: the exit
 * handler that flushes the last lines then spins, and SIGTERM never ends the process. sonic-boom 5 throws
 * instead; here EPIPE (at write or at exit) turns logging to stdout off and the process exits as it should.
 */
function stdoutDestination(): DestinationStream {
  const stdout = new SonicBoom({ fd: 1, sync: false, maxLength: LOG_BUFFER_BYTES });
  let broken = false;
  stdout.on('drop', (data: string) => {
    dropped += data.split('\n').length - 1 || 1;
  });
  stdout.on('error', (err: NodeJS.ErrnoException) => {
    // Nobody reads stdout any more: further lines are dropped. Any other write error is as final for a log.
    broken = true;
    if (err.code !== 'EPIPE') process.emitWarning(`logging to stdout stopped: ${err.message}`);
  });
  // The last lines ("colloquy stopped") are still queued when the process exits: write them synchronously.
  process.once('exit', () => {
    if (broken) return;
    try {
      stdout.flushSync();
    } catch {
      // EPIPE or EAGAIN past the retries: the reader is gone, nothing left to do.
    }
  });
  return {
    write: (line: string) => {
      if (!broken) stdout.write(line);
    },
  };
}

function createRotatingFile(options: LoggerOptions) {
  const file = path.resolve(options.file!);
  mkdirSync(path.dirname(file), { recursive: true });
  const base = path.basename(file);
  // Classic logrotate naming: colloquy.log, colloquy.log.1 … colloquy.log.N (N = LOG_BACKUP_COUNT).
  // With `rotate`, rotating-file-stream calls the generator with the index alone (null for the live file).
  const name = (index: number | Date | null) => (index ? `${base}.${Number(index)}` : base);
  return loadRotatingFileStream().createStream(name, {
    path: path.dirname(file),
    size: `${options.maxBytes ?? 10 * 1024 * 1024}B`,
    rotate: Math.max(1, options.backupCount ?? 5),
  });
}

type LogArgs = Parameters<Logger['info']>;

/**
 * The logger of one request, made on its first line actually written. Fastify gives every request a child
 * logger (bound to its id); making one (bindings serialised, redaction applied) cost more than the rest of
 * a proxied request's logging, and at LOG_LEVEL=warn most requests write nothing at all.
 */
class DeferredChildLogger {
  readonly #parent: Logger;
  readonly #bindings: Record<string, unknown>;
  readonly #options: { level?: string };
  readonly #threshold: number;
  #child: Logger | undefined;

  constructor(parent: Logger, bindings: Record<string, unknown>, options: { level?: string }) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
    this.#threshold = parent.levels.values[options.level ?? parent.level] ?? Number.POSITIVE_INFINITY;
  }

  #real(): Logger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options);
    return this.#child;
  }

  #log(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', value: number, args: LogArgs) {
    if (value >= this.#threshold || this.#child) (this.#real()[level] as (...a: LogArgs) => void)(...args);
  }

  trace(...args: LogArgs) {
    this.#log('trace', 10, args);
  }
  debug(...args: LogArgs) {
    this.#log('debug', 20, args);
  }
  info(...args: LogArgs) {
    this.#log('info', 30, args);
  }
  warn(...args: LogArgs) {
    this.#log('warn', 40, args);
  }
  error(...args: LogArgs) {
    this.#log('error', 50, args);
  }
  fatal(...args: LogArgs) {
    this.#log('fatal', 60, args);
  }
  silent() {}
  child(bindings: Record<string, unknown>, options?: Record<string, unknown>): Logger {
    return this.#real().child(bindings, options);
  }
  // Answered from the threshold: building the child to ask it cost ~17 KiB a call (bindings serialised,
  // redaction paths compiled), and the audit hook asks on every master-key request (issue 18 part 3).
  isLevelEnabled(level: string): boolean {
    if (this.#child) return this.#child.isLevelEnabled(level);
    const value = this.#parent.levels.values[level];
    return value !== undefined && value >= this.#threshold;
  }
  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level;
  }
  set level(level: string) {
    this.#real().level = level;
  }
}

/** Fastify's `childLoggerFactory`: see DeferredChildLogger. */
export function deferredRequestLogger(
  parent: Logger,
  bindings: Record<string, unknown>,
  options: { level?: string },
): Logger {
  return new DeferredChildLogger(parent, bindings, options) as unknown as Logger;
}
