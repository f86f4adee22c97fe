import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type LogEvent, MysqlDialect, PostgresDialect, sql } from 'kysely';
import type * as mysql2 from 'mysql2';
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
  /** PostgreSQL / MySQL pool occupancy; undefined for SQLite. */
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

  if (target.dialect === 'mysql') return openMysql(target.url, target, log, observeQueries);

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
  return (
    code === '23505' ||
    code === 'SQLITE_CONSTRAINT_UNIQUE' ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    code === 'ER_DUP_ENTRY'
  );
}

/**
 * A write that lost a race with a concurrent one: a unique violation, or on MySQL the deadlock InnoDB
 * reports instead when three or more transactions insert the same unique key at once (the losers' shared
 * locks deadlock once the winner commits). Either way the transaction was rolled back as a whole.
 */
export function isWriteRace(err: unknown): boolean {
  return isUniqueViolation(err) || (err as { code?: unknown } | null)?.code === 'ER_LOCK_DEADLOCK';
}

/**
 * MySQL / MariaDB through mysql2 (loaded on first use, like pg). Numbers come back as numbers: DECIMAL (what
 * SUM over integers returns) and BIGINT, the way the pg setup above parses int8; a value past 2^53 would come
 * back as a string, which no count here reaches.
 */
function openMysql(
  url: string,
  target: Config['database'],
  log: (event: LogEvent) => void,
  observeQueries: DatabaseHandle['observeQueries'],
): DatabaseHandle {
  const driver = createRequire(import.meta.url)('mysql2') as typeof mysql2;
  const pool = driver.createPool({
    uri: url,
    connectionLimit: target.poolSize,
    connectTimeout: target.poolTimeoutMs,
    decimalNumbers: true,
    supportBigNumbers: true,
    bigNumberStrings: false,
    dateStrings: true,
    charset: 'utf8mb4',
  });
  const db = new Kysely<Database>({ dialect: new MysqlDialect({ pool }), log });
  // mysql2 keeps its pool's books in fields it does not type.
  const books = pool as unknown as {
    _allConnections?: { length: number };
    _freeConnections?: { length: number };
    _connectionQueue?: { length: number };
  };
  return {
    db,
    dialect: 'mysql',
    observeQueries,
    poolStats: () => ({
      total: books._allConnections?.length ?? 0,
      idle: books._freeConnections?.length ?? 0,
      waiting: books._connectionQueue?.length ?? 0,
    }),
    // MySQL keeps answering `select 1` on a connection whose database was dropped: ask for the database.
    ping: async () => {
      const { rows } = await sql<{
        n: number;
      }>`select count(*) as n from information_schema.schemata where schema_name = database()`.execute(db);
      if (!Number(rows[0]?.n)) throw new Error('the configured database does not exist');
    },
    close: () => db.destroy(),
  };
}
