import Type, { type Static } from 'typebox';

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
  SQLITE_BUSY_TIMEOUT: int('milliseconds SQLite waits on a locked database, 0 to 600000', 0, 600_000, 5_000),
  AUTO_MIGRATE: optionalBool('true or false: apply pending migrations at serve'),

  REDIS_URL: optionalStr('redis://[user:password@]host:port[/db] or rediss://…'),

  LOG_LEVEL: Type.Optional(
    oneOf(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const,
      'one of fatal, error, warn, info, debug, trace, silent',
    ),
  ),
  LOG_FORMAT: Type.Optional(oneOf(['pretty', 'json'] as const, 'pretty or json')),
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
});

export type Env = Static<typeof EnvSchema>;
