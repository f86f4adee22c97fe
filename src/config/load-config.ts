import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { parse as parseDotenv } from 'dotenv';
import Value from 'typebox/value';
import { canonicalTimeZone } from '../core/timezone.js';
import type { ErrorTrackingConfig } from '../error-tracking/reporter.js';
import { type FilesConfig, filesConfigFromEnv } from '../features/files/config.js';
import { limitsConfigFromEnv } from '../features/limits/config.js';
import { type MailConfig, mailConfigFromEnv } from '../features/mail/config.js';
import { type CloudConfig, cloudConfigFromEnv } from '../providers/cloud-config.js';
import type { Timeouts } from '../providers/types.js';
import { VERSION } from '../version.js';
import { type DatabaseTarget, resolveDatabaseTarget } from './database-url.js';
import {
  deriveMemorySettings,
  type MemoryProbe,
  type MemorySettings,
  memoryLimit,
  parseMemorySize,
} from './memory-limit.js';
import { type RoutingFile, readRoutingFile } from './routing-file.js';
import { ENVIRONMENTS, type Env, type Environment, EnvSchema } from './schema.js';

export interface Config {
  env: Environment;
  isProduction: boolean;
  /** Staging and production share the strict rules. */
  isStrict: boolean;
  port: number;
  host: string;
  /** TIMEZONE, canonical: the zone whose midnights start budget days and months and usage days. */
  timeZone: string;
  /**
   * The memory limit (MEMORY_LIMIT, else the container's cgroup limit) and the heap size and load-shedding
   * thresholds derived from it; undefined when there is no limit.
   */
  memory: MemorySettings | undefined;
  /** Worker processes `serve` runs on the port (WORKERS; `auto` is resolved to the core count). */
  workers: number;
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
  /** CACHE_REDIS_URL: the response cache's own Redis (it may evict); undefined: the cache uses REDIS_URL. */
  cacheRedisUrl: string | undefined;
  log: {
    level: string;
    format: 'pretty' | 'json' | 'ecs';
    file: string | undefined;
    maxBytes: number;
    backupCount: number;
    /** OTEL_LOGS_EXPORTER=otlp: log records also go to the OTLP collector. */
    otlp: { endpoint: string; serviceName: string; track: string } | undefined;
  };
  auth: {
    accessTokenTtlSeconds: number;
    refreshTokenTtlSeconds: number;
    allowSignup: boolean;
    loginMaxFailures: number;
    loginWindowSeconds: number;
    /** Self sign-ups confirm their address by mail before they may sign in (needs mail). */
    requireEmailVerification: boolean;
  };
  /** SMTP and the links in mail; undefined when SMTP_HOST is unset (mail features answer 503). */
  mail: MailConfig | undefined;
  providers: {
    /** `headers`: OPENAI_ORG_ID as OpenAI-Organization. */
    /** OPENAI_DEFAULT_MODEL: the model of conversation messages that name none (else the first listed). */
    defaultModel: string | undefined;
    openai: { apiKey: string | undefined; baseUrl: string; headers?: Record<string, string> } | undefined;
    anthropic: { apiKey: string; baseUrl: string } | undefined;
    /** Azure OpenAI, Hugging Face and the OpenAI-compatible presets configured by their variables. */
    cloud: CloudConfig;
    demo: { enabled: boolean; wordDelayMs: number };
    /** The routing file, validated; undefined without COLLOQUY_CONFIG. */
    routing: RoutingFile | undefined;
    timeouts: Timeouts;
    retries: number;
  };
  http: {
    allowedOrigins: string[];
    /** ALLOWED_HOSTS, lower-cased; `*.example.com` matches any subdomain. Empty: every Host is answered. */
    allowedHosts: string[];
    /** ENABLE_DOCS: /docs and /openapi.json are served. */
    enableDocs: boolean;
    httpsOnly: boolean;
    trustProxy: boolean | number | string[];
    bodyLimit: number;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    shutdownTimeoutMs: number;
    shutdownDelayMs: number;
    overload: {
      maxEventLoopDelayMs: number;
      /** OVERLOAD_MAX_HEAP_BYTES, or derived from the memory limit when unset; 0: off. */
      maxHeapBytes: number;
      /** Derived from the memory limit; 0: off. */
      maxRssBytes: number;
      maxConcurrentRequests: number;
    };
  };
  metrics: { token: string | undefined; track: 'stable' | 'canary' };
  tracing: { endpoint: string; serviceName: string } | undefined;
  /** Sentry (or GlitchTip) error tracking; undefined when SENTRY_DSN is unset. */
  errorTracking: Omit<ErrorTrackingConfig, 'secrets'> | undefined;
  limits: ReturnType<typeof limitsConfigFromEnv>;
  cache: { responseTtlMs: number; maxEntries: number; maxBytes: number };
  conversationRetentionDays: number;
  /** GUARDRAILS_PRESET: a safety pack applied to every request (src/features/guardrails/presets.ts). */
  guardrailsPreset?: 'child-safe' | 'wellbeing' | undefined;
  /** The environment's GUARDRAIL_* variables: the secrets guardrails may name (secret_env, api_key_env). */
  secretEnv: Readonly<Record<string, string | undefined>>;
  /** File uploads: limits and storage (issue 24). */
  files: FilesConfig;
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
  /** Where the container's memory limit is read (tests point at fixtures). */
  memoryProbe?: MemoryProbe;
  /** V8's heap limit in this process (default: getHeapStatistics().heap_size_limit). */
  heapLimitBytes?: number;
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
  // Before defaults fill it in: an explicit OVERLOAD_MAX_HEAP_BYTES (0 included) wins over the derived one.
  const heapThresholdSet = known.OVERLOAD_MAX_HEAP_BYTES !== undefined;
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
  if (vars.OTEL_LOGS_EXPORTER === 'otlp' && !vars.OTEL_EXPORTER_OTLP_ENDPOINT)
    problems.push(
      'OTEL_LOGS_EXPORTER: otlp needs OTEL_EXPORTER_OTLP_ENDPOINT (the collector to send logs to)',
    );
  const timeZone = vars.TIMEZONE === undefined ? 'UTC' : canonicalTimeZone(vars.TIMEZONE);
  if (timeZone === undefined)
    problems.push(
      `TIMEZONE: expected an IANA time zone name such as Europe/Paris, America/New_York or UTC (got ${JSON.stringify(vars.TIMEZONE)}: not a zone this Node.js knows)`,
    );
  if (vars.MEMORY_LIMIT !== undefined && parseMemorySize(vars.MEMORY_LIMIT) === undefined)
    problems.push(
      `MEMORY_LIMIT: expected a size above 0 such as 512m or 2g (got ${JSON.stringify(vars.MEMORY_LIMIT)})`,
    );
  const workers = vars.WORKERS === 'auto' ? Math.min(64, availableParallelism()) : Number(vars.WORKERS ?? 1);
  const limit = memoryLimit(vars.MEMORY_LIMIT, options.memoryProbe);
  const memory = limit
    ? deriveMemorySettings(limit, workers, options.heapLimitBytes ?? getHeapStatistics().heap_size_limit)
    : undefined;
  const cloud = cloudConfigFromEnv(vars, problems);
  const mail = mailConfigFromEnv(vars, problems);
  const files = filesConfigFromEnv(vars, problems);
  const routing = vars.COLLOQUY_CONFIG ? readRoutingFile(vars.COLLOQUY_CONFIG, raw) : { problems: [] };
  problems.push(...routing.problems);
  if (problems.length > 0 || !database || !timeZone) throw new ConfigError(problems);
  const router = routing.value?.router;

  const config: Config = {
    env,
    isProduction,
    isStrict,
    port: vars.PORT,
    host: vars.HOST,
    timeZone,
    workers,
    memory,
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
    cacheRedisUrl: vars.CACHE_REDIS_URL,
    log: {
      level: vars.LOG_LEVEL ?? (isStrict ? 'info' : 'debug'),
      format: vars.LOG_FORMAT ?? (isStrict ? 'json' : 'pretty'),
      file: vars.LOG_FILE,
      maxBytes: vars.LOG_MAX_BYTES,
      backupCount: vars.LOG_BACKUP_COUNT,
      otlp:
        vars.OTEL_LOGS_EXPORTER === 'otlp' && vars.OTEL_EXPORTER_OTLP_ENDPOINT
          ? {
              endpoint: vars.OTEL_EXPORTER_OTLP_ENDPOINT,
              serviceName: vars.OTEL_SERVICE_NAME,
              track: vars.COLLOQUY_TRACK ?? 'stable',
            }
          : undefined,
    },
    auth: {
      accessTokenTtlSeconds: vars.ACCESS_TOKEN_EXPIRE_MINUTES * 60,
      refreshTokenTtlSeconds: vars.REFRESH_TOKEN_EXPIRE_DAYS * 86_400,
      allowSignup: vars.ALLOW_SIGNUP ?? !isStrict,
      loginMaxFailures: vars.LOGIN_MAX_FAILURES,
      loginWindowSeconds: vars.LOGIN_WINDOW_SECONDS,
      requireEmailVerification: Boolean(vars.REQUIRE_EMAIL_VERIFICATION && mail),
    },
    mail,
    providers: {
      defaultModel: vars.OPENAI_DEFAULT_MODEL,
      openai:
        vars.OPENAI_API_KEY || vars.OPENAI_BASE_URL
          ? {
              apiKey: vars.OPENAI_API_KEY,
              baseUrl: vars.OPENAI_BASE_URL ?? 'https://api.openai.com/v1',
              // Bills the calls to this organization when the key belongs to several
              // (https://platform.openai.com/docs/api-reference/authentication).
              ...(vars.OPENAI_ORG_ID ? { headers: { 'OpenAI-Organization': vars.OPENAI_ORG_ID } } : {}),
            }
          : undefined,
      anthropic: vars.ANTHROPIC_API_KEY
        ? { apiKey: vars.ANTHROPIC_API_KEY, baseUrl: vars.ANTHROPIC_BASE_URL ?? 'https://api.anthropic.com' }
        : undefined,
      cloud,
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
      allowedHosts: (vars.ALLOWED_HOSTS ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      enableDocs: vars.ENABLE_DOCS ?? !isProduction,
      httpsOnly: vars.HTTPS_ONLY ?? false,
      trustProxy: parseTrustProxy(vars.TRUST_PROXY),
      bodyLimit: vars.MAX_BODY_SIZE,
      requestTimeoutMs: vars.REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: vars.KEEP_ALIVE_TIMEOUT_MS,
      shutdownTimeoutMs: vars.SHUTDOWN_TIMEOUT * 1000,
      shutdownDelayMs: vars.SHUTDOWN_DELAY * 1000,
      overload: {
        maxEventLoopDelayMs: vars.OVERLOAD_MAX_EVENT_LOOP_DELAY_MS,
        maxHeapBytes: heapThresholdSet ? vars.OVERLOAD_MAX_HEAP_BYTES : (memory?.maxHeapBytes ?? 0),
        maxRssBytes: memory?.maxRssBytes ?? 0,
        maxConcurrentRequests: vars.MAX_CONCURRENT_REQUESTS,
      },
    },
    metrics: { token: vars.METRICS_TOKEN, track: vars.COLLOQUY_TRACK ?? 'stable' },
    tracing: vars.OTEL_EXPORTER_OTLP_ENDPOINT
      ? { endpoint: vars.OTEL_EXPORTER_OTLP_ENDPOINT, serviceName: vars.OTEL_SERVICE_NAME }
      : undefined,
    errorTracking: vars.SENTRY_DSN
      ? {
          dsn: vars.SENTRY_DSN,
          environment: vars.SENTRY_ENVIRONMENT ?? env,
          release: vars.SENTRY_RELEASE ?? `colloquy@${VERSION}`,
          track: vars.COLLOQUY_TRACK ?? 'stable',
          sampleRate: vars.SENTRY_SAMPLE_RATE,
          tracesSampleRate: vars.SENTRY_TRACES_SAMPLE_RATE,
        }
      : undefined,
    limits: limitsConfigFromEnv(vars),
    conversationRetentionDays: vars.CONVERSATION_RETENTION_DAYS,
    guardrailsPreset: vars.GUARDRAILS_PRESET,
    // Guardrails name the variables that hold their secrets (a webhook's HMAC key): only GUARDRAIL_*, so an
    // admin API call cannot send, say, DATABASE_URL to a URL of its choosing.
    secretEnv: Object.fromEntries(Object.entries(raw).filter(([name]) => name.startsWith('GUARDRAIL_'))),
    files,
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
