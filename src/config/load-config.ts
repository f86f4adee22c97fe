import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import Value from 'typebox/value';
import { limitsConfigFromEnv } from '../features/limits/config.js';
import type { Timeouts } from '../providers/types.js';
import { type DatabaseTarget, resolveDatabaseTarget } from './database-url.js';
import { type RoutingFile, readRoutingFile } from './routing-file.js';
import { ENVIRONMENTS, type Env, type Environment, EnvSchema } from './schema.js';

export interface Config {
  env: Environment;
  isProduction: boolean;
  /** Staging and production share the strict rules. */
  isStrict: boolean;
  port: number;
  host: string;
  secretKey: string;
  /** True when SECRET_KEY was missing in development and a random one was made for this process. */
  secretKeyGenerated: boolean;
  adminKey: string | undefined;
  database: DatabaseTarget & {
    poolSize: number;
    poolTimeoutMs: number;
    busyTimeoutMs: number;
    /** PostgreSQL: ms a query may take; 0 or unset: no limit (migrations, the doctor). */
    queryTimeoutMs?: number;
  };
  autoMigrate: boolean;
  redisUrl: string | undefined;
  log: {
    level: string;
    format: 'pretty' | 'json';
    file: string | undefined;
    maxBytes: number;
    backupCount: number;
  };
  auth: {
    accessTokenTtlSeconds: number;
    refreshTokenTtlSeconds: number;
    allowSignup: boolean;
    loginMaxFailures: number;
    loginWindowSeconds: number;
  };
  providers: {
    openai: { apiKey: string | undefined; baseUrl: string } | undefined;
    anthropic: { apiKey: string; baseUrl: string } | undefined;
    demo: { enabled: boolean; wordDelayMs: number };
    /** The routing file, validated; undefined without COLLOQUY_CONFIG. */
    routing: RoutingFile | undefined;
    timeouts: Timeouts;
    retries: number;
  };
  http: {
    allowedOrigins: string[];
    httpsOnly: boolean;
    trustProxy: boolean | number | string[];
    bodyLimit: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    shutdownTimeoutMs: number;
    shutdownDelayMs: number;
    overload: { maxEventLoopDelayMs: number; maxHeapBytes: number; maxConcurrentRequests: number };
  };
  metrics: { token: string | undefined; track: 'stable' | 'canary' };
  tracing: { endpoint: string; serviceName: string } | undefined;
  limits: ReturnType<typeof limitsConfigFromEnv>;
  cache: { responseTtlMs: number; maxEntries: number; maxBytes: number };
  conversationRetentionDays: number;
  /** The raw validated variables, for `doctor` and diagnostics. */
  vars: Readonly<Env>;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** Read `.env` from this directory when present (default: the working directory). Pass null to skip. */
  dotenvDir?: string | null;
}

const MIN_SECRET_LENGTH = 32;

/**
 * Parses the environment once, at start, into a frozen Config. Every problem is collected, one line per
 * variable naming what is expected, so an operator fixes them all in one go. Nothing else reads process.env.
 */
export function loadConfig(source: NodeJS.ProcessEnv = process.env, options: LoadConfigOptions = {}): Config {
  const raw = {
    ...readDotenv(options.dotenvDir === undefined ? process.cwd() : options.dotenvDir),
    ...source,
  };
  const known: Record<string, unknown> = {};
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = raw[key];
    // An empty variable (FOO=) means "unset", as in most operators' .env habits.
    if (value !== undefined && value !== '') known[key] = value.trim();
  }
  const converted = Value.Default(EnvSchema, Value.Convert(EnvSchema, known)) as Record<string, unknown>;
  const problems = describeErrors(converted);
  // No early throw: the checks below add their problems too, so one run reports them all.
  const vars = converted as unknown as Env;

  const env: Environment =
    ((ENVIRONMENTS as readonly unknown[]).includes(vars.COLLOQUY_ENV) ? vars.COLLOQUY_ENV : undefined) ??
    (vars.NODE_ENV === 'production' ? 'production' : 'development');
  const isProduction = env === 'production';
  const isStrict = env !== 'development';

  let secretKey = vars.SECRET_KEY;
  let secretKeyGenerated = false;
  if (secretKey !== undefined && secretKey.length < MIN_SECRET_LENGTH) {
    problems.push(`SECRET_KEY: expected at least ${MIN_SECRET_LENGTH} characters (got ${secretKey.length})`);
  } else if (secretKey === undefined) {
    if (isStrict)
      problems.push(`SECRET_KEY: required in ${env}; expected a random secret of at least 32 characters`);
    secretKey = randomBytes(32).toString('base64url');
    secretKeyGenerated = true;
  }
  if (vars.COLLOQUY_ADMIN_KEY !== undefined && vars.COLLOQUY_ADMIN_KEY.length < MIN_SECRET_LENGTH) {
    problems.push(
      `COLLOQUY_ADMIN_KEY: expected at least ${MIN_SECRET_LENGTH} characters (got ${vars.COLLOQUY_ADMIN_KEY.length})`,
    );
  }

  let database: DatabaseTarget | undefined;
  try {
    database = resolveDatabaseTarget(vars, isProduction);
  } catch (err) {
    problems.push(`DATABASE_URL: ${(err as Error).message}`);
  }
  const demoEnabled = vars.DEMO_MODEL_ENABLED ?? !isProduction;
  if (demoEnabled && isProduction) {
    problems.push(
      'DEMO_MODEL_ENABLED: the demo model is refused in production; remove it and configure a provider',
    );
  }
  const allowedOrigins = (vars.ALLOWED_ORIGINS ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  if (isProduction && allowedOrigins.includes('*')) {
    problems.push('ALLOWED_ORIGINS: "*" is refused in production; list the origins of your web apps');
  }
  const routing = vars.COLLOQUY_CONFIG ? readRoutingFile(vars.COLLOQUY_CONFIG, raw) : { problems: [] };
  problems.push(...routing.problems);
  if (problems.length > 0 || !database) throw new ConfigError(problems);
  const router = routing.value?.router;

  const config: Config = {
    env,
    isProduction,
    isStrict,
    port: vars.PORT,
    host: vars.HOST,
    secretKey,
    secretKeyGenerated,
    adminKey: vars.COLLOQUY_ADMIN_KEY,
    database: {
      ...database,
      poolSize: vars.DB_POOL_SIZE,
      poolTimeoutMs: vars.DB_POOL_TIMEOUT,
      queryTimeoutMs: vars.DB_QUERY_TIMEOUT,
      busyTimeoutMs: vars.SQLITE_BUSY_TIMEOUT,
    },
    autoMigrate: vars.AUTO_MIGRATE ?? !isStrict,
    redisUrl: vars.REDIS_URL,
    log: {
      level: vars.LOG_LEVEL ?? (isStrict ? 'info' : 'debug'),
      format: vars.LOG_FORMAT ?? (isStrict ? 'json' : 'pretty'),
      file: vars.LOG_FILE,
      maxBytes: vars.LOG_MAX_BYTES,
      backupCount: vars.LOG_BACKUP_COUNT,
    },
    auth: {
      accessTokenTtlSeconds: vars.ACCESS_TOKEN_EXPIRE_MINUTES * 60,
      refreshTokenTtlSeconds: vars.REFRESH_TOKEN_EXPIRE_DAYS * 86_400,
      allowSignup: vars.ALLOW_SIGNUP ?? !isStrict,
      loginMaxFailures: vars.LOGIN_MAX_FAILURES,
      loginWindowSeconds: vars.LOGIN_WINDOW_SECONDS,
    },
    providers: {
      openai:
        vars.OPENAI_API_KEY || vars.OPENAI_BASE_URL
          ? { apiKey: vars.OPENAI_API_KEY, baseUrl: vars.OPENAI_BASE_URL ?? 'https://api.openai.com/v1' }
          : undefined,
      anthropic: vars.ANTHROPIC_API_KEY
        ? { apiKey: vars.ANTHROPIC_API_KEY, baseUrl: vars.ANTHROPIC_BASE_URL ?? 'https://api.anthropic.com' }
        : undefined,
      demo: { enabled: demoEnabled, wordDelayMs: vars.DEMO_WORD_DELAY_MS },
      routing: routing.value,
      timeouts: {
        connectMs: router?.timeouts?.connect_ms ?? vars.UPSTREAM_CONNECT_TIMEOUT_MS,
        firstTokenMs: router?.timeouts?.first_token_ms ?? vars.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS,
        idleMs: router?.timeouts?.idle_ms ?? vars.UPSTREAM_IDLE_TIMEOUT_MS,
        totalMs: router?.timeouts?.total_ms ?? vars.UPSTREAM_TOTAL_TIMEOUT_MS,
      },
      retries: router?.retries ?? vars.UPSTREAM_RETRIES,
    },
    http: {
      allowedOrigins,
      httpsOnly: vars.HTTPS_ONLY ?? false,
      trustProxy: parseTrustProxy(vars.TRUST_PROXY),
      bodyLimit: vars.MAX_BODY_SIZE,
      requestTimeoutMs: vars.REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: vars.KEEP_ALIVE_TIMEOUT_MS,
      shutdownTimeoutMs: vars.SHUTDOWN_TIMEOUT * 1000,
      shutdownDelayMs: vars.SHUTDOWN_DELAY * 1000,
      overload: {
        maxEventLoopDelayMs: vars.OVERLOAD_MAX_EVENT_LOOP_DELAY_MS,
        maxHeapBytes: vars.OVERLOAD_MAX_HEAP_BYTES,
        maxConcurrentRequests: vars.MAX_CONCURRENT_REQUESTS,
      },
    },
    metrics: { token: vars.METRICS_TOKEN, track: vars.COLLOQUY_TRACK ?? 'stable' },
    tracing: vars.OTEL_EXPORTER_OTLP_ENDPOINT
      ? { endpoint: vars.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: vars.OTEL_SERVICE_NAME }
      : undefined,
    limits: limitsConfigFromEnv(vars),
    conversationRetentionDays: vars.CONVERSATION_RETENTION_DAYS,
    cache: {
      responseTtlMs: vars.RESPONSE_CACHE_TTL_SECONDS * 1000,
      maxEntries: vars.CACHE_MAX_ENTRIES,
      maxBytes: vars.CACHE_MAX_BYTES,
    },
    vars: Object.freeze({ ...vars }),
  };
  return deepFreeze(config);
}

function parseTrustProxy(value: string | undefined): boolean | number | string[] {
  if (!value || value === 'false') return false;
  if (value === 'true') return true;
  if (/^\d+$/.test(value)) return Number(value);
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

function readDotenv(dir: string | null): Record<string, string> {
  if (dir === null) return {};
  const file = `${dir}/.env`;
  return existsSync(file) ? parseDotenv(readFileSync(file)) : {};
}

/** One line per bad variable (checked one by one, so no error limit hides a later variable). */
function describeErrors(value: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    const got = value[name];
    if (got === undefined || Value.Check(schema, got)) continue;
    const expected = (schema as { description?: string }).description ?? 'a valid value';
    problems.push(`${name}: expected ${expected} (got ${JSON.stringify(got)})`);
  }
  return problems;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}
