import { mkdirSync } from 'node:fs';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type LogEvent, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { loadPg, resilientPgClientClass } from './pg-client.js';
import type { Database, Dialect } from './schema.js';
import { startCheckpointer } from './sqlite-checkpointer.js';
import { AutoRollbackAwareSqliteDialect } from './sqlite-dialect.js';
import { withStatementCache } from './sqlite-statement-cache.js';

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  dialect: Dialect;
  /** Cheap round trip for readiness. Throws when the database cannot answer. */
  ping(): Promise<void>;
  /** Receives every query's duration (metrics); set once the app is built. */
  observeQueries(observer: (durationMs: number) => void): void;
  /** PostgreSQL pool occupancy; undefined for SQLite. */
  poolStats(): { total: number; idle: number; waiting: number } | undefined;
  close(): Promise<void>;
}

// int8 (COUNT, SUM over integers) arrives as a string by default; our counts fit in a double.
const pgTypes = (driver: typeof pg) => ({
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? Number : driver.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
});

export function openDatabase(target: Config['database']): DatabaseHandle {
  let observer: ((durationMs: number) => void) | undefined;
  const log = (event: LogEvent) => observer?.(event.queryDurationMillis);
  const observeQueries = (fn: (durationMs: number) => void) => {
    observer = fn;
  };
  if (target.dialect === 'sqlite') {
    if (target.path !== ':memory:') mkdirSync(path.dirname(target.path), { recursive: true });
    const sqlite = new SqliteDatabase(target.path, { timeout: target.busyTimeoutMs });
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma(`busy_timeout = ${Math.floor(target.busyTimeoutMs)}`);
    // WAL makes NORMAL durable against application crashes; only an OS crash can lose the last commits.
    sqlite.pragma('synchronous = NORMAL');
    const checkpointer = target.path === ':memory:' ? undefined : startCheckpointer(sqlite, target.path);
    const db = new Kysely<Database>({
      dialect: new AutoRollbackAwareSqliteDialect(sqlite, withStatementCache(sqlite)),
      log,
    });
    return {
      db,
      dialect: 'sqlite',
      observeQueries,
      poolStats: () => undefined,
      ping: async () => {
        await sql`select 1`.execute(db);
      },
      close: async () => {
        await checkpointer?.close();
        await db.destroy();
      },
    };
  }

  const driver = loadPg();
  const pool = new driver.Pool({
    connectionString: target.url,
    max: target.poolSize,
    connectionTimeoutMillis: target.poolTimeoutMs,
    // The server cancels a slow query; the client gives up (and drops the connection) shortly after, in
    // case the server cannot answer at all. Either way the request gets a prompt 503, not a hang.
    ...(target.queryTimeoutMs
      ? { statement_timeout: target.queryTimeoutMs, query_timeout: target.queryTimeoutMs + 1_000 }
      : {}),
    Client: resilientPgClientClass(),
    idleTimeoutMillis: 30_000,
    types: pgTypes(driver),
  });
  // An idle client losing its server (restart, failover) must not crash the process; the pool replaces it.
  pool.on('error', () => {});
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), log });
  return {
    db,
    dialect: 'postgres',
    observeQueries,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    ping: async () => {
      await sql`select 1`.execute(db);
    },
    close: () => db.destroy(),
  };
}

/** Unique-constraint violations look different per driver; callers turn them into 409s. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
