import Type, { type Static } from 'typebox';
import { SENTRY_DSN_PATTERN } from '../error-tracking/dsn.js';
import { FILES_ENV } from '../features/files/config.js';
import { LIMITS_ENV } from '../features/limits/config.js';
import { MAIL_ENV } from '../features/mail/config.js';
import { CLOUD_ENV } from '../providers/cloud-env.js';
import { MEMORY_SIZE_PATTERN } from './memory-limit.js';

/**
 * Every environment variable Colloquy reads, in one schema. `description` is what the start-up error
 * prints as "expected …", and `.env.example` documents the same names (a test keeps them in step).
 * Values arrive as strings and are converted by TypeBox before validation.
 */
const str = (description: string, options: { default?: string; minLength?: number } = {}) =>
  Type.String({ description, ...options });
const optionalStr = (description: string) => Type.Optional(Type.String({ description, minLength: 1 }));
const int = (description: string, min: number, max: number, dflt?: number) =>
  Type.Integer({ description, minimum: min, maximum: max, ...(dflt === undefined ? {} : { default: dflt }) });
const optionalBool = (description: string) => Type.Optional(Type.Boolean({ description }));
const oneOf = <T extends string>(values: readonly T[], description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

export const ENVIRONMENTS = ['development', 'staging', 'production'] as const;
export type Environment = (typeof ENVIRONMENTS)[number];

export const EnvSchema = Type.Object({
  COLLOQUY_ENV: Type.Optional(oneOf(ENVIRONMENTS, 'one of development, staging, production')),
  NODE_ENV: optionalStr(
    'the Node.js environment; "production" selects production when COLLOQUY_ENV is unset',
  ),
  PORT: int('a TCP port, an integer from 0 to 65535', 0, 65535, 8000),
  HOST: str('the address to listen on, e.g. 0.0.0.0 or 127.0.0.1', { default: '0.0.0.0', minLength: 1 }),
  WORKERS: Type.Optional(
    Type.String({
      description: 'worker processes serving the port: an integer from 1 to 64, or auto (one per core)',
      pattern: '^(auto|[1-9]|[1-5][0-9]|6[0-4])$',
    }),
  ),
  SECRET_KEY: optionalStr('a random secret of at least 32 characters (signs access tokens)'),
  COLLOQUY_ADMIN_KEY: optionalStr(
    'a master key of at least 32 characters, accepted as a bearer token with admin rights',
  ),

  DATABASE_URL: optionalStr('sqlite:PATH, sqlite://PATH, postgres://… or postgresql://…'),
  DB_HOST: optionalStr('the PostgreSQL host (production, when DATABASE_URL is unset)'),
  DB_PORT: int('the PostgreSQL port, an integer from 1 to 65535', 1, 65535, 5432),
  DB_USER: optionalStr('the PostgreSQL user'),
  DB_PASSWORD: optionalStr('the PostgreSQL password'),
  DB_NAME: str('the PostgreSQL database name', { default: 'colloquy', minLength: 1 }),
  DB_POOL_SIZE: int('the PostgreSQL pool size, an integer from 1 to 1000', 1, 1000, 10),
  DB_POOL_TIMEOUT: int('milliseconds to wait for a pooled connection, 100 to 600000', 100, 600_000, 10_000),
  DB_QUERY_TIMEOUT: int(
    'milliseconds a PostgreSQL query may take before it is abandoned, 0 (no limit) to 600000',
    0,
    600_000,
    30_000,
  ),
  SQLITE_BUSY_TIMEOUT: int('milliseconds SQLite waits on a locked database, 0 to 600000', 0, 600_000, 5_000),
  AUTO_MIGRATE: optionalBool('true or false: apply pending migrations at serve'),

  REDIS_URL: optionalStr('redis://[user:password@]host:port[/db] or rediss://…'),
  CACHE_REDIS_URL: optionalStr(
    'a Redis for the response cache only, redis://… (default: REDIS_URL); give it maxmemory and allkeys-lru',
  ),

  LOG_LEVEL: Type.Optional(
    oneOf(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'one of fatal, error, warn, info, debug, trace, silent',
    ),
  ),
  LOG_FORMAT: Type.Optional(
    oneOf(['pretty', 'json', 'ecs'] as const, 'pretty, json or ecs (JSON in Elastic Common Schema names)'),
  ),
  LOG_FILE: optionalStr('a file path; logs are also written there as JSON, rotated by size'),
  LOG_MAX_BYTES: int(
    'bytes before the log file rotates, 1024 to 1073741824',
    1024,
    1024 ** 3,
    10 * 1024 * 1024,
  ),
  LOG_BACKUP_COUNT: int('rotated log files kept, 0 to 100', 0, 100, 5),

  ACCESS_TOKEN_EXPIRE_MINUTES: int('access token lifetime in minutes, 1 to 1440', 1, 1440, 15),
  REFRESH_TOKEN_EXPIRE_DAYS: int('refresh token lifetime in days, 1 to 365', 1, 365, 30),
  ALLOW_SIGNUP: optionalBool('true or false: anyone may create an account'),
  LOGIN_MAX_FAILURES: int('failed logins per account and address before throttling, 1 to 1000', 1, 1000, 5),
  LOGIN_WINDOW_SECONDS: int('seconds over which failed logins are counted, 1 to 86400', 1, 86_400, 900),

  COLLOQUY_CONFIG: optionalStr(
    'the path of a YAML or JSON routing file (providers, model aliases, router, prices)',
  ),
  OPENAI_API_KEY: optionalStr('an OpenAI (or OpenAI-compatible server) API key'),
  OPENAI_BASE_URL: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'an http(s) URL such as https://api.openai.com/v1' }),
  ),
  OPENAI_ORG_ID: Type.Optional(
    Type.String({
      pattern: '^org-[A-Za-z0-9_-]+$',
      description: 'an OpenAI organization id such as org-AbC123',
    }),
  ),
  OPENAI_DEFAULT_MODEL: optionalStr(
    'the model a conversation message uses when neither it, its conversation nor its assistant names one',
  ),
  ANTHROPIC_API_KEY: optionalStr('an Anthropic API key'),
  ANTHROPIC_BASE_URL: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'an http(s) URL such as https://api.anthropic.com' }),
  ),
  ...CLOUD_ENV,
  DEMO_MODEL_ENABLED: optionalBool('true or false: serve the in-process demo model (never in production)'),
  DEMO_WORD_DELAY_MS: int('milliseconds between the demo model’s streamed words, 0 to 5000', 0, 5000, 15),
  UPSTREAM_CONNECT_TIMEOUT_MS: int('milliseconds to connect to an upstream, 1 to 600000', 1, 600_000, 10_000),
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: int(
    'milliseconds until the first token (or whole answer), 1 to 3600000',
    1,
    3_600_000,
    120_000,
  ),
  UPSTREAM_IDLE_TIMEOUT_MS: int(
    'the longest gap between streamed chunks in ms, 1 to 3600000',
    1,
    3_600_000,
    60_000,
  ),
  UPSTREAM_TOTAL_TIMEOUT_MS: int(
    'milliseconds for a whole upstream call, 1 to 86400000',
    1,
    86_400_000,
    600_000,
  ),
  ALLOWED_ORIGINS: optionalStr(
    'a comma-separated list of origins allowed by CORS, e.g. https://app.example.com',
  ),
  ALLOWED_HOSTS: optionalStr(
    'a comma-separated list of host names this service answers to (Host header), e.g. api.example.com,*.example.com',
  ),
  TIMEZONE: optionalStr(
    'an IANA time zone name such as Europe/Paris or Asia/Shanghai: where budget days and months and usage days begin (default UTC)',
  ),
  ENABLE_DOCS: optionalBool('true or false: serve /docs and /openapi.json (default: off in production)'),
  HTTPS_ONLY: optionalBool('true or false: send HSTS (the service is only reached over HTTPS)'),
  TRUST_PROXY: optionalStr(
    'proxies whose X-Forwarded-For is trusted: true, a hop count, or comma-separated IPs/CIDRs',
  ),
  MAX_BODY_SIZE: int(
    'the largest request body in bytes, 1024 to 104857600',
    1024,
    100 * 1024 * 1024,
    1024 * 1024,
  ),
  REQUEST_TIMEOUT_MS: int('milliseconds to receive a whole request, 1000 to 600000', 1000, 600_000, 30_000),
  KEEP_ALIVE_TIMEOUT_MS: int(
    'milliseconds an idle keep-alive connection stays open, 1000 to 600000',
    1000,
    600_000,
    72_000,
  ),
  SHUTDOWN_DELAY: int(
    'seconds to keep serving after SIGTERM while load balancers deregister, 0 to 300',
    0,
    300,
    0,
  ),
  SHUTDOWN_TIMEOUT: int(
    'seconds in-flight requests and streams get to finish at shutdown, 0 to 3600',
    0,
    3600,
    30,
  ),
  OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: int(
    'event-loop delay in ms above which requests get 503, 0 (off) to 60000',
    0,
    60_000,
    1000,
  ),
  MAX_CONCURRENT_REQUESTS: int(
    'requests (streams and WebSockets included) one replica serves at once; past it 503, 0 (no cap) or more',
    0,
    1_000_000,
    10_000,
  ),
  MEMORY_LIMIT: Type.Optional(
    Type.String({
      pattern: MEMORY_SIZE_PATTERN,
      description:
        'the memory Colloquy may use, e.g. 512m, 2g or 1536Mi (default: the container limit read from cgroup v2 or v1)',
    }),
  ),
  OVERLOAD_MAX_HEAP_BYTES: int(
    'heap use in bytes above which requests get 503, 0 (off) or more (default: derived from the memory limit)',
    0,
    Number.MAX_SAFE_INTEGER,
    0,
  ),
  METRICS_TOKEN: optionalStr(
    'a bearer token required to read /metrics; in production /metrics answers 403 without it',
  ),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'an OTLP/HTTP collector URL such as http://otel-collector:4318',
    }),
  ),
  OTEL_LOGS_EXPORTER: Type.Optional(
    oneOf(['otlp', 'none'] as const, 'otlp (log records to OTEL_EXPORTER_OTLP_ENDPOINT/v1/logs) or none'),
  ),
  OTEL_SERVICE_NAME: str('the service name on exported traces', { default: 'colloquy', minLength: 1 }),
  COLLOQUY_TRACK: Type.Optional(oneOf(['stable', 'canary'] as const, 'stable or canary')),
  SENTRY_DSN: Type.Optional(
    Type.String({
      pattern: SENTRY_DSN_PATTERN,
      description: 'a Sentry or GlitchTip DSN such as https://<key>@sentry.example.com/42',
    }),
  ),
  SENTRY_ENVIRONMENT: optionalStr('the environment on reported errors (default: COLLOQUY_ENV)'),
  SENTRY_RELEASE: optionalStr('the release on reported errors (default: colloquy@<version>)'),
  SENTRY_SAMPLE_RATE: Type.Number({
    description: 'the share of errors reported, a number from 0 to 1',
    minimum: 0,
    maximum: 1,
    default: 1,
  }),
  SENTRY_TRACES_SAMPLE_RATE: Type.Number({
    description: 'the share of Sentry performance traces, 0 to 1 (Colloquy starts none: traces go to OTLP)',
    minimum: 0,
    maximum: 1,
    default: 0,
  }),
  RESPONSE_CACHE_TTL_SECONDS: int(
    'seconds a cached chat answer is served, 0 (cache off) to 2592000',
    0,
    2_592_000,
    3600,
  ),
  CACHE_MAX_ENTRIES: int('in-memory cache entries, 100 to 10000000', 100, 10_000_000, 10_000),
  CACHE_MAX_BYTES: int(
    'in-memory cache size in bytes, 1048576 or more',
    1_048_576,
    Number.MAX_SAFE_INTEGER,
    64 * 1024 * 1024,
  ),
  ...LIMITS_ENV,
  ...MAIL_ENV,
  ...FILES_ENV,
  CONVERSATION_RETENTION_DAYS: int(
    'days an untouched conversation (prompts and replies) is kept, 0 (forever) to 36500',
    0,
    36_500,
    0,
  ),
  GUARDRAILS_PRESET: Type.Optional(
    oneOf(
      ['child-safe', 'wellbeing'] as const,
      'child-safe or wellbeing: a safety pack of guardrails applied to every request',
    ),
  ),
  UPSTREAM_RETRIES: int('extra upstream attempts per request (retries and fallbacks), 0 to 10', 0, 10, 2),
});

export type Env = Static<typeof EnvSchema>;
