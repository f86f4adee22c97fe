import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseDotenv } from 'dotenv';
import Value from 'typebox/value';
import { type DatabaseTarget, resolveDatabaseTarget } from './database-url.js';
import { type Env, type Environment, EnvSchema } from './schema.js';

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
  database: DatabaseTarget & { poolSize: number; poolTimeoutMs: number; busyTimeoutMs: number };
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
  if (problems.length > 0) throw new ConfigError(problems);
  const vars = converted as unknown as Env;

  const env: Environment =
    vars.COLLOQUY_ENV ?? (vars.NODE_ENV === 'production' ? 'production' : 'development');
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
  if (problems.length > 0 || !database) throw new ConfigError(problems);

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
    vars: Object.freeze({ ...vars }),
  };
  return deepFreeze(config);
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
