import { existsSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Redis } from 'ioredis';
import { Kysely, SqliteDialect } from 'kysely';
import { type DatabaseTarget, describeDatabaseTarget } from '../config/database-url.js';
import { type Config, ConfigError, loadConfig } from '../config/load-config.js';
import { ENVIRONMENTS, type Environment } from '../config/schema.js';
import { openDatabase } from '../db/database.js';
import { isContractMigration, MIGRATIONS, migrationStatus } from '../db/migrator.js';
import type { Database } from '../db/schema.js';
import { describeDsn, isWellFormedDsn } from '../error-tracking/dsn.js';
import type { MailConfig } from '../features/mail/config.js';
import { verifySmtp } from '../features/mail/transport.js';
import { checkBackupTools } from './doctor-backup.js';
import { type CheckCloud, checkCloudAccess, checkClouds } from './doctor-clouds.js';
import { checkFileStorage } from './doctor-files.js';
import { checkMemory } from './doctor-memory.js';

/**
 * `colloquy doctor`: the preflight an operator runs before deploying. Every check turns the configuration
 * (and, for the database and Redis, a short connection attempt) into findings with a fix; nothing is
 * changed. Errors mean "do not deploy this", warnings "probably wrong", info "worth knowing".
 */
export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  /** Stable and machine-readable, e.g. `secret_key.weak`; configuration problems are `config.<VARIABLE>`. */
  id: string;
  severity: Severity;
  message: string;
  fix: string;
}

export interface DatabaseInspection {
  /** False when the SQLite file does not exist yet (the server would create it). */
  exists: boolean;
  pending: string[];
  unknown: string[];
}

export interface DoctorDeps {
  /** Connects and reads the migration state; throws when the database cannot be reached. */
  inspectDatabase?: (target: DatabaseTarget, timeoutMs: number) => Promise<DatabaseInspection>;
  /** Connects and PINGs; throws when Redis cannot be reached. */
  pingRedis?: (url: string, timeoutMs: number) => Promise<void>;
  /** The `.env` file whose permissions are checked (default: `./.env`); null skips the check. */
  envFile?: string | null;
  /** Proves a configured cloud provider reachable with its credentials (default: a real request). */
  checkCloud?: CheckCloud;
  /** Connects to the SMTP server, upgrades to TLS and logs in (default: nodemailer's verify). */
  verifySmtp?: (config: MailConfig, timeoutMs: number) => Promise<void>;
  /** Whether an executable is on PATH (the MySQL backup tools; default: a look at PATH). */
  onPath?: (name: string) => boolean;
  /** Per connection attempt (default 3 s). */
  timeoutMs?: number;
  platform?: NodeJS.Platform;
}

export type RawEnv = Record<string, string | undefined>;

const DEFAULT_TIMEOUT_MS = 3_000;
const MIN_SECRET_LENGTH = 32;
const SEVERITY_ORDER: Record<Severity, number> = { error: 0, warning: 1, info: 2 };
const GENERATE = 'generate one with `openssl rand -base64 48`';

/** What the checks need, from a loaded Config or, when the configuration is invalid, salvaged from the env. */
interface View {
  env: Environment;
  isProduction: boolean;
  isStrict: boolean;
  host: string;
  logLevel: string;
  secretKey: string | undefined;
  adminKey: string | undefined;
  /** Undefined when the database settings themselves are invalid. */
  database: DatabaseTarget | undefined;
  demoEnabled: boolean;
  providersConfigured: boolean;
  allowSignup: boolean;
  redisUrl: string | undefined;
}

/**
 * Runs every check. `config` is what loadConfig returned, or the ConfigError it threw: each of its problems
 * becomes an error finding and the remaining checks still run on what can be salvaged. `env` is the raw
 * environment (`.env` merged under the process environment), read for variables the schema lacks.
 */
export async function runDoctor(
  config: Config | ConfigError,
  env: RawEnv,
  deps: DoctorDeps = {},
): Promise<Finding[]> {
  const timeoutMs = deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const problems = config instanceof ConfigError ? config.problems : [];
  const view = config instanceof ConfigError ? salvageView(env, problems) : viewOf(config);
  const findings: Finding[] = [];
  const add = (id: string, severity: Severity, message: string, fix: string) =>
    findings.push({ id, severity, message, fix });

  checkSecrets(view, add);
  checkSecretReuse(view, env, add);
  checkEnvironment(view, env, add);
  await checkDatabase(view, problems, deps, timeoutMs, add);
  checkBackupTools(view.database, add, deps.onPath);
  checkEnvFile(view, deps, add);
  checkProviders(view, add);
  await checkRedis(view, env, deps, timeoutMs, add);
  checkHttp(view, env, add);
  checkErrorTracking(env, add);
  if (!(config instanceof ConfigError)) {
    await checkClouds(config, deps.checkCloud ?? checkCloudAccess, timeoutMs, add);
    await checkFileStorage(config, timeoutMs, add);
    if (config.mail) await checkMail(config.mail, deps, timeoutMs, add);
    checkMemory(config, value(env, 'NODE_OPTIONS'), add);
  }

  // A configuration problem a specific check already explains (with a better fix) is not repeated.
  const explained = (problem: string) =>
    Object.entries(EXPLAINED_BY).some(
      ([variable, prefix]) =>
        problem.startsWith(`${variable}:`) &&
        findings.some((f) => f.id.startsWith(prefix) && f.severity === 'error'),
    );
  const configFindings: Finding[] = problems
    .filter((p) => !explained(p))
    .map((p) => ({
      id: `config.${/^([A-Z][A-Z0-9_]*):/.exec(p)?.[1] ?? 'invalid'}`,
      severity: 'error',
      message: p,
      fix: 'correct the variable (see .env.example); `colloquy serve` refuses to start until then',
    }));
  return [...configFindings, ...findings].sort(
    (a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity],
  );
}

const EXPLAINED_BY: Record<string, string> = {
  SECRET_KEY: 'secret_key.',
  COLLOQUY_ADMIN_KEY: 'admin_key.',
  DEMO_MODEL_ENABLED: 'demo.',
  ALLOWED_ORIGINS: 'cors.',
  SENTRY_DSN: 'error_tracking.',
};

type Add = (id: string, severity: Severity, message: string, fix: string) => void;

function checkSecrets(view: View, add: Add) {
  const { secretKey, adminKey, isStrict, env } = view;
  if (secretKey === undefined) {
    if (isStrict) add('secret_key.missing', 'error', `SECRET_KEY is not set (required in ${env})`, GENERATE);
    else
      add(
        'secret_key.missing',
        'info',
        'SECRET_KEY is not set: a random key is generated per process, so sessions end at every restart',
        `set SECRET_KEY to keep sessions across restarts; ${GENERATE}`,
      );
  } else if (secretKey.length < MIN_SECRET_LENGTH) {
    add(
      'secret_key.short',
      'error',
      `SECRET_KEY has ${secretKey.length} characters; at least ${MIN_SECRET_LENGTH} are required`,
      GENERATE,
    );
  } else {
    const weak = weakSecretReason(secretKey);
    if (weak)
      add(
        'secret_key.weak',
        isStrict ? 'error' : 'warning',
        `SECRET_KEY ${weak}: anyone who guesses it can sign access tokens`,
        GENERATE,
      );
  }

  if (adminKey === undefined) return;
  if (adminKey.length < MIN_SECRET_LENGTH) {
    add(
      'admin_key.short',
      'error',
      `COLLOQUY_ADMIN_KEY has ${adminKey.length} characters; at least ${MIN_SECRET_LENGTH} are required`,
      `${GENERATE}, or unset it`,
    );
  } else if (secretKey !== undefined && adminKey === secretKey) {
    add(
      'admin_key.same_as_secret',
      'error',
      'COLLOQUY_ADMIN_KEY equals SECRET_KEY: leaking one gives both admin access and token signing',
      `use two different random values; ${GENERATE}`,
    );
  } else {
    const weak = weakSecretReason(adminKey);
    if (weak)
      add(
        'admin_key.weak',
        isStrict ? 'error' : 'warning',
        `COLLOQUY_ADMIN_KEY ${weak}: it grants admin rights to whoever guesses it`,
        `${GENERATE}, or unset it`,
      );
  }
}

/**
 * Secrets that guard different things must differ: each is held by different people and systems (the
 * metrics token sits in Prometheus's configuration, a provider key in its vendor's console), so one leak must
 * not open another door. Equal to SECRET_KEY, any of them lets its holder sign access tokens for any user.
 * COLLOQUY_ADMIN_KEY == SECRET_KEY has its own finding (admin_key.same_as_secret).
 */
const SHARED_SECRETS = [
  'SECRET_KEY',
  'COLLOQUY_ADMIN_KEY',
  'METRICS_TOKEN',
  'OPENAI_API_KEY',
  'ANTHROPIC_API_KEY',
];

function checkSecretReuse(view: View, env: RawEnv, add: Add) {
  const values: [string, string | undefined][] = SHARED_SECRETS.map((name) => [
    name,
    name === 'SECRET_KEY' ? view.secretKey : name === 'COLLOQUY_ADMIN_KEY' ? view.adminKey : value(env, name),
  ]);
  for (const [i, [first, a]] of values.entries()) {
    for (const [second, b] of values.slice(i + 1)) {
      if (!a || a !== b) continue;
      if (first === 'SECRET_KEY' && second === 'COLLOQUY_ADMIN_KEY') continue;
      add(
        `secrets.reused.${second.toLowerCase()}`,
        'error',
        `${second} equals ${first}: whoever holds one holds both` +
          (first === 'SECRET_KEY' ? ', and can sign access tokens for any user' : ''),
        `give ${second} its own random value; ${GENERATE}`,
      );
    }
  }
}

const KNOWN_DEFAULTS = [
  'changeme',
  'change-me',
  'change_me',
  'changethis',
  'secret',
  'password',
  'passw0rd',
  'default',
  'example',
  'sample',
  'placeholder',
  'replace',
  'insecure',
  'colloquy',
  'qwerty',
  'letmein',
  '12345',
  'abcdef',
];

/** Why a secret is guessable (a known default word, too few distinct characters, a pattern), or undefined. */
export function weakSecretReason(secret: string): string | undefined {
  const lower = secret.toLowerCase();
  const word = KNOWN_DEFAULTS.find((w) => lower.includes(w));
  if (word) return `contains the well-known default "${word}"`;
  const distinct = new Set(secret).size;
  if (distinct < 10) return `uses only ${distinct} distinct characters`;
  for (let period = 1; period <= secret.length / 2; period++) {
    let repeats = true;
    for (let i = period; i < secret.length && repeats; i++) repeats = secret[i] === secret[i - period];
    if (repeats) return 'is a repeated pattern';
  }
  let run = 1;
  for (let i = 1; i < secret.length; i++) {
    const step = secret.charCodeAt(i) - secret.charCodeAt(i - 1);
    run = step === 1 || step === -1 ? run + 1 : 1;
    if (run >= 8) return 'contains a long run of consecutive characters';
  }
  if (shannonBitsPerChar(secret) < 3) return 'has too little entropy';
  return undefined;
}

function shannonBitsPerChar(s: string): number {
  const counts = new Map<string, number>();
  for (const c of s) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= (n / s.length) * Math.log2(n / s.length);
  return bits;
}

function checkEnvironment(view: View, env: RawEnv, add: Add) {
  if (view.isProduction && (view.logLevel === 'debug' || view.logLevel === 'trace')) {
    add(
      'log_level.verbose',
      'warning',
      `LOG_LEVEL=${view.logLevel} in production: verbose logs cost I/O and may carry request details`,
      'set LOG_LEVEL=info (or unset it)',
    );
  }
  if (view.env === 'development' && value(env, 'NODE_ENV') === 'production' && !isLoopback(view.host)) {
    add(
      'env.development_exposed',
      'error',
      `the development environment (COLLOQUY_ENV=development) listens on the public address ${view.host} ` +
        'with NODE_ENV=production: open sign-up, the demo model and a generated secret are exposed',
      'set COLLOQUY_ENV=production (or HOST=127.0.0.1 for a local trial)',
    );
  }
  const origins = (value(env, 'ALLOWED_ORIGINS') ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
  if (view.isProduction && origins.some((o) => o.includes('*'))) {
    add(
      'cors.wildcard',
      'error',
      'ALLOWED_ORIGINS contains "*" in production: any web site can call the API from a browser',
      'list the exact origins, e.g. ALLOWED_ORIGINS=https://app.example.com',
    );
  }
}

async function checkDatabase(view: View, problems: string[], deps: DoctorDeps, timeoutMs: number, add: Add) {
  const target = view.database;
  if (!target) {
    if (problems.some((p) => /^(DATABASE_URL|DB_[A-Z_]+):/.test(p)))
      add(
        'database.skipped',
        'info',
        'database checks skipped: the database settings are invalid',
        'fix the DATABASE_URL / DB_* errors above and run doctor again',
      );
    return;
  }
  if (target.dialect === 'sqlite' && view.isStrict) {
    add(
      'database.sqlite_in_production',
      view.isProduction ? 'error' : 'warning',
      `the database is SQLite (${target.path}) in ${view.env}: one file on one machine, no replicas, no failover`,
      'use PostgreSQL: DATABASE_URL=postgres://user:password@host:5432/colloquy',
    );
  }
  if (target.dialect === 'postgres' && view.isProduction) {
    const host = postgresHost(target.url);
    if (host && isLoopback(host))
      add(
        'database.postgres_localhost',
        'warning',
        `the PostgreSQL host is ${host} in production: inside a container this is the container itself`,
        'point DATABASE_URL (or DB_HOST) at the database server’s address',
      );
  }

  let inspection: DatabaseInspection;
  try {
    inspection = await (deps.inspectDatabase ?? inspectDatabase)(target, timeoutMs);
  } catch (err) {
    add(
      'database.unreachable',
      'error',
      `cannot reach the database ${describeDatabaseTarget(target)}: ${redact(errorMessage(err), target)}`,
      'check DATABASE_URL (host, port, credentials, database name) and that the server is up and reachable',
    );
    return;
  }
  if (inspection.pending.length) {
    add(
      'database.pending_migrations',
      view.isProduction ? 'error' : 'warning',
      `${inspection.exists ? '' : 'the database does not exist yet; '}${inspection.pending.length} pending migration(s): ${inspection.pending.join(', ')}`,
      'run `colloquy migrate up` before starting this version',
    );
  }
  if (inspection.unknown.length) {
    // Expand/contract: a newer release's expand-only migrations leave a schema this release runs on; a
    // contract one, or this release's own migrations skipped, leave one it cannot (see db/migrator.ts).
    const contract = inspection.unknown.filter(isContractMigration);
    const blocked = contract.length > 0 || inspection.pending.length > 0;
    add(
      'database.unknown_migrations',
      blocked ? 'error' : 'warning',
      blocked
        ? `the database has migrations of a newer release (${inspection.unknown.join(', ')}) that this version cannot run on${contract.length ? ` (contract: ${contract.join(', ')})` : ' (its own migrations were skipped)'}`
        : `the database is at a newer, compatible schema (expand-only migrations of a newer release: ${inspection.unknown.join(', ')}); this version runs on it`,
      blocked
        ? 'deploy that newer release, or restore a backup taken before it ran'
        : 'nothing to do for a rollback; deploy the newer release again when it is fixed',
    );
  }
}

function checkEnvFile(view: View, deps: DoctorDeps, add: Add) {
  if (deps.envFile === null || (deps.platform ?? process.platform) === 'win32') return;
  const file = deps.envFile ?? path.resolve('.env');
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return; // no .env: nothing to protect
  }
  if ((mode & 0o077) === 0) return;
  add(
    'env_file.permissions',
    view.isProduction ? 'error' : 'warning',
    `${file} has mode ${mode.toString(8).padStart(4, '0')}: other users on this machine can read its secrets`,
    `chmod 600 ${file}`,
  );
}

function checkProviders(view: View, add: Add) {
  if (view.demoEnabled && view.isProduction) {
    add(
      'demo.enabled_in_production',
      'error',
      'the demo model is enabled in production (it answers with canned text)',
      'unset DEMO_MODEL_ENABLED and configure a real provider',
    );
  }
  if (view.providersConfigured) return;
  if (view.isStrict)
    add(
      'providers.none',
      view.isProduction ? 'error' : 'warning',
      `no model provider is configured in ${view.env}: every chat request would fail`,
      'set OPENAI_API_KEY (or OPENAI_BASE_URL), ANTHROPIC_API_KEY, or providers in the COLLOQUY_CONFIG file',
    );
  else
    add(
      'providers.none',
      'info',
      'no model provider is configured: the demo model answers',
      'set OPENAI_API_KEY (or OPENAI_BASE_URL for a local server such as Ollama) or ANTHROPIC_API_KEY',
    );
}

async function checkRedis(view: View, env: RawEnv, deps: DoctorDeps, timeoutMs: number, add: Add) {
  // WORKERS (a clustered `serve`) counts too; `serve` itself refuses WORKERS > 1 without Redis.
  const workers = value(env, 'WORKERS') === 'auto' ? availableParallelism() : intOf(value(env, 'WORKERS'));
  const replicas = Math.max(intOf(value(env, 'REPLICAS')), intOf(value(env, 'WEB_CONCURRENCY')), workers);
  if (replicas > 1 && !view.redisUrl) {
    add(
      'cluster.no_redis',
      'error',
      `${replicas} replicas/processes without REDIS_URL: rate limits, login throttling and key revocations ` +
        'would only hold within each process',
      'set REDIS_URL=redis://host:6379/0 shared by every replica',
    );
  }
  if (!view.redisUrl) return;
  try {
    await (deps.pingRedis ?? pingRedis)(view.redisUrl, timeoutMs);
  } catch (err) {
    add(
      'redis.unreachable',
      'error',
      `cannot reach Redis at ${redactUrl(view.redisUrl)}: ${redact(errorMessage(err), view.redisUrl)}`,
      'check REDIS_URL (host, port, password, TLS with rediss://) and that Redis is up',
    );
  }
}

/** Mail is sent from the outbox in the background: a wrong SMTP setting would only show as mail never arriving. */
async function checkMail(mail: MailConfig, deps: DoctorDeps, timeoutMs: number, add: Add) {
  try {
    await (deps.verifySmtp ?? verifySmtp)(mail, timeoutMs);
  } catch (err) {
    add(
      'smtp.unreachable',
      'error',
      `cannot send mail through ${mail.host}:${mail.port} (SMTP_TLS=${mail.tls}): ${mail.password ? errorMessage(err).replaceAll(mail.password, '***') : errorMessage(err)}`,
      'check SMTP_HOST, SMTP_PORT, SMTP_TLS (starttls on 587, tls on 465), SMTP_USERNAME/SMTP_PASSWORD and SMTP_CA_FILE',
    );
  }
}

function checkHttp(view: View, env: RawEnv, add: Add) {
  if (view.isProduction && boolOf(value(env, 'HTTPS_ONLY')) !== true) {
    add(
      'https.not_enforced',
      'warning',
      'HTTPS_ONLY is not true in production: tokens and API keys may travel over plain HTTP',
      'terminate TLS in front of Colloquy and set HTTPS_ONLY=true',
    );
  }
  if (!value(env, 'METRICS_TOKEN') && view.isProduction) {
    add(
      'metrics.no_token',
      'error',
      'METRICS_TOKEN is not set in production: /metrics answers 403 and Prometheus gets no figures',
      'set METRICS_TOKEN to a random value (openssl rand -hex 32) and give Prometheus the same bearer token',
    );
  } else if (!value(env, 'METRICS_TOKEN') && !isLoopback(view.host)) {
    add(
      'metrics.unprotected',
      'warning',
      `/metrics has no METRICS_TOKEN and the server listens on ${view.host}: anyone who can reach it can ` +
        'read usage and traffic figures',
      'set METRICS_TOKEN to a random value (or listen on HOST=127.0.0.1 behind a reverse proxy)',
    );
  }
  if (view.isProduction && view.allowSignup) {
    add(
      'signup.open',
      'warning',
      'ALLOW_SIGNUP is true in production: anyone can create an account and spend your provider budget',
      'set ALLOW_SIGNUP=false and create accounts with `colloquy users create`',
    );
  }
}

// --- views ---------------------------------------------------------------------------------------

/** One line for doctor's header: whether errors are reported, and where (the DSN without its key). */
export function errorTrackingStatus(env: RawEnv): { configured: boolean; wellFormed: boolean; line: string } {
  const dsn = value(env, 'SENTRY_DSN');
  if (!dsn) return { configured: false, wellFormed: false, line: 'error tracking off (SENTRY_DSN unset)' };
  if (!isWellFormedDsn(dsn))
    return {
      configured: true,
      wellFormed: false,
      line: 'error tracking misconfigured (SENTRY_DSN malformed)',
    };
  return { configured: true, wellFormed: true, line: `error tracking to ${describeDsn(dsn)}` };
}

function checkErrorTracking(env: RawEnv, add: Add) {
  const status = errorTrackingStatus(env);
  if (status.configured && !status.wellFormed)
    add(
      'error_tracking.dsn_malformed',
      'error',
      'SENTRY_DSN is not a DSN: errors would not be reported',
      "copy the DSN from the project's Client Keys page: https://<public_key>@<host>/<project_id>",
    );
}

function viewOf(config: Config): View {
  const routed = config.providers.routing?.providers?.length ?? 0;
  return {
    env: config.env,
    isProduction: config.isProduction,
    isStrict: config.isStrict,
    host: config.host,
    logLevel: config.log.level,
    secretKey: config.secretKeyGenerated ? undefined : config.secretKey,
    adminKey: config.adminKey,
    database: config.database,
    demoEnabled: config.providers.demo.enabled,
    providersConfigured: Boolean(
      config.providers.openai ||
        config.providers.anthropic ||
        config.providers.cloud.azure ||
        config.providers.cloud.huggingface ||
        config.providers.cloud.bedrock ||
        config.providers.cloud.presets.length > 0 ||
        routed > 0,
    ),
    allowSignup: config.auth.allowSignup,
    redisUrl: config.redisUrl,
  };
}

const PLACEHOLDER_SECRET = 'doctor-placeholder-'.padEnd(48, 'x');

/**
 * With an invalid configuration, the variables named in its problems are dropped (a placeholder stands in
 * for SECRET_KEY) and the configuration is loaded again, so every other check still runs. Secrets and the
 * demo switch, which loadConfig refuses, are read from the raw environment.
 */
function salvageView(env: RawEnv, problems: string[]): View {
  const bad = new Set(problems.map((p) => /^([A-Z][A-Z0-9_]*):/.exec(p)?.[1]).filter(Boolean));
  const patched: RawEnv = { ...env };
  for (const name of bad) delete patched[name as string];
  patched.SECRET_KEY = PLACEHOLDER_SECRET;
  let base: Config | undefined;
  try {
    base = loadConfig(patched as NodeJS.ProcessEnv, { dotenvDir: null });
  } catch {
    base = undefined;
  }
  const colloquyEnv = value(env, 'COLLOQUY_ENV');
  const environment: Environment =
    base?.env ??
    ((ENVIRONMENTS as readonly string[]).includes(colloquyEnv ?? '')
      ? (colloquyEnv as Environment)
      : value(env, 'NODE_ENV') === 'production'
        ? 'production'
        : 'development');
  const isProduction = environment === 'production';
  const isStrict = environment !== 'development';
  const databaseBroken = [...bad].some((name) => name === 'DATABASE_URL' || name?.startsWith('DB_'));
  const rawProviders = ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'ANTHROPIC_API_KEY', 'COLLOQUY_CONFIG'].some(
    (name) => value(env, name) !== undefined,
  );
  return {
    env: environment,
    isProduction,
    isStrict,
    host: base?.host ?? value(env, 'HOST') ?? '0.0.0.0',
    logLevel: base?.log.level ?? value(env, 'LOG_LEVEL') ?? (isStrict ? 'info' : 'debug'),
    secretKey: value(env, 'SECRET_KEY'),
    adminKey: value(env, 'COLLOQUY_ADMIN_KEY'),
    database: databaseBroken ? undefined : base?.database,
    demoEnabled: boolOf(value(env, 'DEMO_MODEL_ENABLED')) ?? !isProduction,
    // An invalid routing file is reported as a configuration error; it is not also "no provider".
    providersConfigured: (base ? viewOf(base).providersConfigured : false) || rawProviders,
    allowSignup: base?.auth.allowSignup ?? boolOf(value(env, 'ALLOW_SIGNUP')) ?? !isStrict,
    redisUrl: bad.has('REDIS_URL') ? undefined : (base?.redisUrl ?? value(env, 'REDIS_URL')),
  };
}

// --- connections ---------------------------------------------------------------------------------

/** Reads the migration state without creating or changing anything (a missing SQLite file stays missing). */
export async function inspectDatabase(
  target: DatabaseTarget,
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<DatabaseInspection> {
  if (target.dialect === 'sqlite') {
    if (target.path === ':memory:' || !existsSync(target.path))
      return { exists: false, pending: Object.keys(MIGRATIONS).sort(), unknown: [] };
    const sqlite = new SqliteDatabase(target.path, {
      readonly: true,
      fileMustExist: true,
      timeout: timeoutMs,
    });
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
    try {
      const { pending, unknown } = await migrationStatus(db);
      return { exists: true, pending, unknown };
    } finally {
      await db.destroy();
    }
  }
  const handle = openDatabase({
    ...target,
    poolSize: 1,
    poolTimeoutMs: Math.max(100, timeoutMs),
    busyTimeoutMs: timeoutMs,
  });
  try {
    const { pending, unknown } = await withTimeout(migrationStatus(handle.db), timeoutMs, 'the database');
    return { exists: true, pending, unknown };
  } finally {
    void handle.close().catch(() => {});
  }
}

export async function pingRedis(url: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  let lastError: unknown;
  redis.on('error', (err) => {
    lastError = err;
  });
  try {
    await withTimeout(
      (async () => {
        await redis.connect();
        await redis.ping();
      })(),
      timeoutMs,
      'Redis',
    );
  } catch (err) {
    const cause = errorMessage(err);
    throw new Error(/Connection is closed/i.test(cause) && lastError ? errorMessage(lastError) : cause);
  } finally {
    redis.disconnect();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// --- helpers -------------------------------------------------------------------------------------

/** A raw variable as loadConfig sees it: trimmed, and empty means unset. */
function value(env: RawEnv, name: string): string | undefined {
  const v = env[name]?.trim();
  return v ? v : undefined;
}

function boolOf(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  return undefined;
}

function intOf(v: string | undefined): number {
  const n = v === undefined ? Number.NaN : Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : 0;
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\./.test(h) || h === '::ffff:127.0.0.1';
}

function postgresHost(url: string): string | undefined {
  try {
    const u = new URL(url);
    return u.hostname || u.searchParams.get('host') || 'localhost';
  } catch {
    return undefined;
  }
}

function errorMessage(err: unknown): string {
  const e = err as { message?: string; code?: string; errors?: unknown[] };
  // AggregateError (several addresses tried) has an empty message.
  if (!e?.message && Array.isArray(e?.errors) && e.errors.length) return errorMessage(e.errors[0]);
  return (e?.message || e?.code || String(err)).split('\n')[0]!;
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}

/** Drivers sometimes echo the connection string; its password must never reach the output. */
function redact(message: string, target: DatabaseTarget | string): string {
  const url = typeof target === 'string' ? target : target.dialect === 'sqlite' ? undefined : target.url;
  if (!url) return message;
  let out = message.replaceAll(url, redactUrl(url));
  try {
    const password = decodeURIComponent(new URL(url).password);
    if (password) out = out.replaceAll(password, '***');
  } catch {
    // not a URL: nothing more to hide
  }
  return out;
}
