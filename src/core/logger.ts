import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pino, { type DestinationStream, type Logger, type StreamEntry } from 'pino';
import pretty from 'pino-pretty';
import { createStream } from 'rotating-file-stream';

export type { Logger };

export interface LoggerOptions {
  level: string;
  format: 'pretty' | 'json';
  file?: string | undefined;
  maxBytes?: number;
  backupCount?: number;
  /** Exact secret values (master key, provider keys…) scrubbed wherever they appear in a message. */
  secrets?: (string | undefined)[];
  /** Tests capture output here instead of stdout. */
  destination?: DestinationStream;
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

export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s): s is string => typeof s === 'string' && s.length >= 8);
  const streams: StreamEntry[] = [];
  if (options.destination) {
    streams.push({ level: 'trace', stream: options.destination });
  } else if (options.format === 'pretty') {
    streams.push({
      level: 'trace',
      stream: pretty({
        colorize: process.stdout.isTTY,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      }),
    });
  } else {
    streams.push({ level: 'trace', stream: pino.destination({ fd: 1, sync: false }) });
  }
  if (options.file) streams.push({ level: 'trace', stream: createRotatingFile(options) });

  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      serializers: {
        err: (err: Error) => {
          const serialized = pino.stdSerializers.err(err);
          serialized.message = scrubSecrets(serialized.message ?? '', secrets);
          if (serialized.stack) serialized.stack = scrubSecrets(serialized.stack, secrets);
          return serialized;
        },
        req: (req) => {
          const serialized = pino.stdSerializers.req(req);
          serialized.url = scrubSecrets(serialized.url ?? '', secrets);
          return serialized;
        },
      },
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

function createRotatingFile(options: LoggerOptions) {
  const file = path.resolve(options.file!);
  mkdirSync(path.dirname(file), { recursive: true });
  const base = path.basename(file);
  // Classic logrotate naming: colloquy.log, colloquy.log.1 … colloquy.log.N (N = LOG_BACKUP_COUNT).
  // With `rotate`, rotating-file-stream calls the generator with the index alone (null for the live file).
  const name = (index: number | Date | null) => (index ? `${base}.${Number(index)}` : base);
  return createStream(name, {
    path: path.dirname(file),
    size: `${options.maxBytes ?? 10 * 1024 * 1024}B`,
    rotate: Math.max(1, options.backupCount ?? 5),
  });
}
