import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import pg from 'pg';
import type { DatabaseTarget } from '../config/database-url.js';
import { backupMysql, countMysqlTarget, isMysqlDump, restoreMysql, verifyMysql } from './backup-mysql.js';

/**
 * Backups and restores of the configured database.
 *
 * SQLite: the online backup API of better-sqlite3, from a read transaction, so the copy is one consistent
 * snapshot even while the server writes (WAL lets writers go on). Restore copies the file next to the
 * database, checks it (`PRAGMA integrity_check`) and renames it into place.
 *
 * PostgreSQL: `pg_dump --format=custom` on a snapshot exported from a REPEATABLE READ transaction (the row
 * counts of the summary come from that very snapshot), `pg_restore --clean --if-exists --no-owner` in one
 * transaction, so a failed restore changes nothing. The connection goes to the tools as PG* variables:
 * the password never appears in a command line or in output.
 *
 * MySQL / MariaDB: `mariadb-dump --single-transaction` and the `mariadb` client (src/ops/backup-mysql.ts).
 */

export interface TableCount {
  table: string;
  rows: number;
}

export interface BackupSummary {
  dialect: DatabaseTarget['dialect'];
  file: string;
  bytes: number;
  tables: TableCount[];
  rows: number;
}

export interface ProgressEvent {
  done: number;
  total: number;
}

export interface BackupOptions {
  /** Called as the work advances (SQLite: pages; PostgreSQL: tables; MySQL: steps). */
  onProgress?: (event: ProgressEvent) => void;
}

export interface CountMismatch {
  table: string;
  /** Rows in the source when the backup was taken; null when the table is missing there. */
  expected: number | null;
  /** Rows after restoring the backup; null when the table is missing there. */
  actual: number | null;
}

export interface VerifyResult {
  ok: boolean;
  tables: TableCount[];
  mismatches: CountMismatch[];
}

/** A failure with a message meant for the operator (no stack trace needed). */
export class BackupError extends Error {
  override name = 'BackupError';
}

const MIGRATION_TABLES = new Set(['schema_migrations', 'schema_migrations_lock']);
const SQLITE_MAGIC = 'SQLite format 3\0';
const PG_CUSTOM_MAGIC = 'PGDMP';

/** `./backups/colloquy-<dialect>-<UTC timestamp>.(db|dump|sql)`. */
export function defaultBackupFile(dialect: DatabaseTarget['dialect'], now = new Date(), dir = 'backups') {
  const stamp = now
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/[-:]/g, '');
  const extension = { sqlite: 'db', postgres: 'dump', mysql: 'sql' }[dialect];
  return path.resolve(dir, `colloquy-${dialect}-${stamp}.${extension}`);
}

export const totalRows = (tables: TableCount[]) => tables.reduce((sum, t) => sum + t.rows, 0);

/** Rows outside the migration bookkeeping: what a restore would throw away. */
export const dataRows = (tables: TableCount[]) =>
  totalRows(tables.filter((t) => !MIGRATION_TABLES.has(t.table)));

export function compareCounts(expected: TableCount[], actual: TableCount[]): CountMismatch[] {
  const want = new Map(expected.map((t) => [t.table, t.rows]));
  const got = new Map(actual.map((t) => [t.table, t.rows]));
  const names = [...new Set([...want.keys(), ...got.keys()])].sort();
  return names
    .map((table) => ({ table, expected: want.get(table) ?? null, actual: got.get(table) ?? null }))
    .filter((m) => m.expected !== m.actual);
}

export function createBackup(
  target: DatabaseTarget,
  file: string,
  options: BackupOptions = {},
): Promise<BackupSummary> {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  if (target.dialect === 'mysql') return backupMysql(target.url, path.resolve(file), options);
  return target.dialect === 'sqlite'
    ? backupSqlite(target.path, path.resolve(file), options)
    : backupPostgres(target.url, path.resolve(file), options);
}

/** Restores the backup into a scratch database and compares its row counts with `expected`. */
export function verifyBackup(
  target: DatabaseTarget,
  file: string,
  expected: TableCount[],
): Promise<VerifyResult> {
  if (target.dialect === 'mysql') return verifyMysql(target.url, file, expected);
  return target.dialect === 'sqlite'
    ? verifySqlite(file, expected)
    : verifyPostgres(target.url, file, expected);
}

/** Replaces the target database's contents with the backup's. Refuses a corrupted or foreign file. */
export function restoreBackup(
  target: DatabaseTarget,
  file: string,
  options: BackupOptions = {},
): Promise<BackupSummary> {
  if (!existsSync(file)) return Promise.reject(new BackupError(`${file} does not exist`));
  if (target.dialect === 'mysql') {
    const found = detectBackupDialect(file);
    if (found && found !== 'mysql')
      return Promise.reject(
        new BackupError(`${file} is ${BACKUP_NAMES[found]}, but the configured database is MySQL / MariaDB`),
      );
    return restoreMysql(target.url, path.resolve(file), options);
  }
  return target.dialect === 'sqlite'
    ? restoreSqlite(target.path, path.resolve(file), options)
    : restorePostgres(target.url, path.resolve(file), options);
}

/**
 * Row counts per table of the target; [] for a SQLite file that does not exist yet; undefined when the
 * SQLite file is unreadable (corrupted: a restore is exactly what it needs).
 */
export async function countTargetRows(target: DatabaseTarget): Promise<TableCount[] | undefined> {
  if (target.dialect === 'postgres') {
    return withPgClient(target.url, (client) => countPgTables(client));
  }
  if (target.dialect === 'mysql') return countMysqlTarget(target.url);
  if (target.path === ':memory:' || !existsSync(target.path)) return [];
  try {
    const db = new SqliteDatabase(target.path, { readonly: true, fileMustExist: true, timeout: 5_000 });
    try {
      return countSqliteTables(db);
    } finally {
      db.close();
    }
  } catch (err) {
    if (isSqliteCorruption(err)) return undefined;
    throw err;
  }
}

export function detectBackupDialect(file: string): DatabaseTarget['dialect'] | undefined {
  const head = Buffer.alloc(16);
  let read = 0;
  try {
    const fd = openSync(file, 'r');
    try {
      read = readSync(fd, head, 0, 16, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new BackupError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const text = head.subarray(0, read).toString('latin1');
  if (text === SQLITE_MAGIC) return 'sqlite';
  if (text.startsWith(PG_CUSTOM_MAGIC)) return 'postgres';
  if (isMysqlDump(file)) return 'mysql';
  return undefined;
}

const BACKUP_NAMES = {
  sqlite: 'a SQLite database file',
  postgres: 'a PostgreSQL custom-format dump (pg_dump -Fc)',
  mysql: 'a MySQL / MariaDB SQL dump (mariadb-dump)',
};

function assertBackupDialect(file: string, dialect: 'sqlite' | 'postgres') {
  const found = detectBackupDialect(file);
  if (found === dialect) return;
  if (found)
    throw new BackupError(
      `${file} is ${BACKUP_NAMES[found]}, but the configured database is ${dialect === 'sqlite' ? 'SQLite' : 'PostgreSQL'}`,
    );
  throw new BackupError(
    `${file} is not a valid backup: expected ${BACKUP_NAMES[dialect]} (corrupted or wrong file?)`,
  );
}

// --- SQLite --------------------------------------------------------------------------------------

function quoteIdent(name: string) {
  return `"${name.replaceAll('"', '""')}"`;
}

function countSqliteTables(db: SqliteDatabase.Database): TableCount[] {
  const names = db
    .prepare(`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`)
    .pluck()
    .all() as string[];
  return names.map((table) => ({
    table,
    rows: db
      .prepare(`select count(*) from ${quoteIdent(table)}`)
      .pluck()
      .get() as number,
  }));
}

function isSqliteCorruption(err: unknown) {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('SQLITE_NOTADB') || code.startsWith('SQLITE_CORRUPT');
}

/** Opens a SQLite copy and checks it thoroughly; returns its row counts. Throws BackupError when bad. */
function checkSqliteFile(file: string, label: string): TableCount[] {
  let db: SqliteDatabase.Database | undefined;
  try {
    db = new SqliteDatabase(file, { fileMustExist: true });
    const problems = db.prepare('pragma integrity_check').pluck().all() as string[];
    if (problems.length !== 1 || problems[0] !== 'ok')
      throw new BackupError(
        `${label} failed the integrity check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? '; …' : ''}`,
      );
    const tables = countSqliteTables(db);
    if (!tables.some((t) => t.table === 'schema_migrations'))
      throw new BackupError(`${label} is not a Colloquy database (it has no schema_migrations table)`);
    // A self-contained single file: no -wal/-shm companions to lose on the way.
    db.pragma('journal_mode = DELETE');
    return tables;
  } catch (err) {
    if (err instanceof BackupError) throw err;
    if (isSqliteCorruption(err))
      throw new BackupError(`${label} is corrupted: ${(err as Error).message}`, { cause: err });
    throw err;
  } finally {
    db?.close();
  }
}

async function backupSqlite(dbPath: string, file: string, options: BackupOptions): Promise<BackupSummary> {
  if (dbPath === ':memory:') throw new BackupError('an in-memory SQLite database cannot be backed up');
  if (!existsSync(dbPath)) throw new BackupError(`the database ${dbPath} does not exist`);
  const partial = `${file}.partial-${randomBytes(4).toString('hex')}`;
  const source = new SqliteDatabase(dbPath, { readonly: true, fileMustExist: true, timeout: 10_000 });
  try {
    // The first read of this transaction fixes the snapshot: the counts and the copy describe the same
    // instant, and the server's writes meanwhile (WAL) neither block nor restart the backup.
    source.exec('begin');
    const tables = countSqliteTables(source);
    const { totalPages } = await source.backup(partial, {
      progress: ({ totalPages, remainingPages }) => {
        options.onProgress?.({ done: totalPages - remainingPages, total: totalPages });
        return 256;
      },
    });
    source.exec('commit');
    options.onProgress?.({ done: totalPages, total: totalPages });
    // The copy carries the source's WAL flag; a backup is better as one self-contained file.
    const copy = new SqliteDatabase(partial, { fileMustExist: true });
    try {
      copy.pragma('journal_mode = DELETE');
    } finally {
      copy.close();
    }
    chmodSync(partial, 0o600);
    renameSync(partial, file);
    return { dialect: 'sqlite', file, bytes: statSync(file).size, tables, rows: totalRows(tables) };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  } finally {
    source.close();
  }
}

async function verifySqlite(file: string, expected: TableCount[]): Promise<VerifyResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-verify-'));
  try {
    const scratch = path.join(dir, 'verify.db');
    copyFileSync(file, scratch);
    const tables = checkSqliteFile(scratch, `the backup ${file}`);
    const mismatches = compareCounts(expected, tables);
    return { ok: mismatches.length === 0, tables, mismatches };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function restoreSqlite(dbPath: string, file: string, options: BackupOptions): Promise<BackupSummary> {
  if (dbPath === ':memory:') throw new BackupError('cannot restore into an in-memory SQLite database');
  assertBackupDialect(file, 'sqlite');
  const dir = path.dirname(dbPath);
  mkdirSync(dir, { recursive: true });
  // Same directory, so the final rename is atomic: the database is either the old file or the new one.
  const staged = path.join(dir, `.${path.basename(dbPath)}.restore-${randomBytes(4).toString('hex')}`);
  try {
    options.onProgress?.({ done: 0, total: 3 });
    copyFileSync(file, staged);
    options.onProgress?.({ done: 1, total: 3 });
    const tables = checkSqliteFile(staged, `the backup ${file}`);
    options.onProgress?.({ done: 2, total: 3 });
    if (existsSync(dbPath)) releaseSqliteTarget(dbPath);
    // Leftover WAL files belong to the old database; SQLite would replay them into the new one.
    rmSync(`${dbPath}-wal`, { force: true });
    rmSync(`${dbPath}-shm`, { force: true });
    renameSync(staged, dbPath);
    options.onProgress?.({ done: 3, total: 3 });
    return { dialect: 'sqlite', file, bytes: statSync(dbPath).size, tables, rows: totalRows(tables) };
  } finally {
    rmSync(staged, { force: true });
  }
}

/** Proves no other process has the database open, then folds its WAL back so nothing is left behind. */
function releaseSqliteTarget(dbPath: string) {
  let db: SqliteDatabase.Database | undefined;
  try {
    db = new SqliteDatabase(dbPath, { fileMustExist: true, timeout: 500 });
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('begin exclusive');
    db.exec('commit');
    db.pragma('wal_checkpoint(TRUNCATE)');
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
      throw new BackupError(
        `${dbPath} is in use by another process (is \`colloquy serve\` running?): stop it before restoring`,
      );
    if (!isSqliteCorruption(err)) throw err;
    // A corrupted database is replaced as it is.
  } finally {
    db?.close();
  }
}

// --- PostgreSQL ----------------------------------------------------------------------------------

const PG_PARAM_VARIABLES: [string, string][] = [
  ['host', 'PGHOST'],
  ['port', 'PGPORT'],
  ['sslmode', 'PGSSLMODE'],
  ['sslcert', 'PGSSLCERT'],
  ['sslkey', 'PGSSLKEY'],
  ['sslrootcert', 'PGSSLROOTCERT'],
  ['application_name', 'PGAPPNAME'],
  ['options', 'PGOPTIONS'],
  ['connect_timeout', 'PGCONNECT_TIMEOUT'],
];

/** The libpq environment for a connection URL: the tools get the password here, never in argv. */
export function pgToolEnv(url: string, database?: string): NodeJS.ProcessEnv {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BackupError('DATABASE_URL is not a parseable PostgreSQL URL');
  }
  const env: NodeJS.ProcessEnv = { ...process.env };
  const set = (name: string, value: string | null | undefined) => {
    if (value) env[name] = value;
  };
  set('PGHOST', decodeURIComponent(u.hostname).replace(/^\[|\]$/g, ''));
  set('PGPORT', u.port);
  set('PGUSER', decodeURIComponent(u.username));
  set('PGPASSWORD', decodeURIComponent(u.password));
  set('PGDATABASE', database ?? decodeURIComponent(u.pathname.replace(/^\//, '')));
  for (const [param, variable] of PG_PARAM_VARIABLES) set(variable, u.searchParams.get(param));
  return env;
}

function databaseName(url: string) {
  return pgToolEnv(url).PGDATABASE ?? 'postgres';
}

/** A libpq conninfo naming only the database (everything else comes from the PG* variables). */
function dbnameArg(name: string) {
  return `dbname='${name.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
}

function withDatabaseName(url: string, name: string) {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

/** Removes the URL's password (and the URL itself) from anything shown to the operator. */
export function redactSecrets(text: string, url: string): string {
  let out = text;
  try {
    const u = new URL(url);
    const password = decodeURIComponent(u.password);
    if (password) {
      out = out.replaceAll(url, url.replace(`:${u.password}@`, ':***@'));
      out = out.replaceAll(password, '***');
    }
  } catch {
    // not a URL
  }
  return out;
}

async function withPgClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    throw new BackupError(`cannot connect to PostgreSQL: ${redactSecrets((err as Error).message, url)}`, {
      cause: err,
    });
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

async function countPgTables(client: pg.Client): Promise<TableCount[]> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `select n.nspname as schema, c.relname as name
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'r'
        and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
      order by 1, 2`,
  );
  const counts: TableCount[] = [];
  for (const { schema, name } of rows) {
    const result = await client.query<{ n: string }>(
      `select count(*)::text as n from ${quoteIdent(schema)}.${quoteIdent(name)}`,
    );
    counts.push({ table: schema === 'public' ? name : `${schema}.${name}`, rows: Number(result.rows[0]?.n) });
  }
  return counts;
}

interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a PostgreSQL client tool; stderr lines go to `onLine` as they come (for --verbose progress). */
function runTool(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  onLine?: (line: string) => void,
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      partial += chunk;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine?.(line);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new BackupError(
              `${command} was not found: install the PostgreSQL client tools (the server's major version or newer)`,
            )
          : err,
      );
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The tool's own error lines (not its --verbose chatter), redacted. */
function toolFailure(result: ToolResult, url: string): string {
  const lines = result.stderr
    .split('\n')
    .filter((l) => /error|fatal|could not|failed|invalid|unexpected|does not/i.test(l))
    .slice(0, 5);
  const text = (lines.length ? lines : result.stderr.trim().split('\n').slice(-5)).join('\n').trim();
  return redactSecrets(text || `exit code ${result.code}`, url);
}

async function backupPostgres(url: string, file: string, options: BackupOptions): Promise<BackupSummary> {
  const partial = `${file}.partial-${randomBytes(4).toString('hex')}`;
  try {
    return await withPgClient(url, async (client) => {
      await client.query('begin isolation level repeatable read read only');
      const { rows } = await client.query<{ id: string }>('select pg_export_snapshot() as id');
      const snapshot = rows[0]!.id;
      const tables = await countPgTables(client);
      let done = 0;
      const total = Math.max(1, tables.length);
      options.onProgress?.({ done, total });
      const result = await runTool(
        'pg_dump',
        ['--format=custom', '--no-password', '--verbose', `--snapshot=${snapshot}`, `--file=${partial}`],
        pgToolEnv(url),
        (line) => {
          if (/dumping contents of table/.test(line)) options.onProgress?.({ done: ++done, total });
        },
      );
      await client.query('commit');
      if (result.code !== 0) throw new BackupError(`pg_dump failed:\n${toolFailure(result, url)}`);
      options.onProgress?.({ done: total, total });
      chmodSync(partial, 0o600);
      renameSync(partial, file);
      return { dialect: 'postgres', file, bytes: statSync(file).size, tables, rows: totalRows(tables) };
    });
  } finally {
    rmSync(partial, { force: true });
  }
}

/** Lists the archive's table of contents: proves the file is a readable custom-format dump. */
async function readPgArchive(url: string, file: string): Promise<string[]> {
  assertBackupDialect(file, 'postgres');
  const result = await runTool('pg_restore', ['--list', file], pgToolEnv(url));
  if (result.code !== 0)
    throw new BackupError(`${file} is not a valid PostgreSQL backup: ${toolFailure(result, url)}`);
  const entries = result.stdout.split('\n').filter((l) => l && !l.startsWith(';'));
  if (!entries.some((l) => / TABLE \S+ schema_migrations /.test(l)))
    throw new BackupError(`${file} is not a Colloquy database (it has no schema_migrations table)`);
  return entries;
}

async function pgRestoreInto(
  url: string,
  database: string,
  file: string,
  entries: string[],
  extraArgs: string[],
  options: BackupOptions,
) {
  const total = Math.max(1, entries.filter((l) => / TABLE DATA /.test(l)).length);
  let done = 0;
  options.onProgress?.({ done, total });
  const result = await runTool(
    'pg_restore',
    [
      ...extraArgs,
      '--no-owner',
      '--single-transaction',
      '--exit-on-error',
      '--no-password',
      '--verbose',
      `--dbname=${dbnameArg(database)}`,
      file,
    ],
    pgToolEnv(url, database),
    (line) => {
      if (/processing data for table/.test(line)) options.onProgress?.({ done: ++done, total });
    },
  );
  if (result.code !== 0)
    throw new BackupError(
      `pg_restore failed (one transaction: nothing was changed):\n${toolFailure(result, url)}`,
    );
  options.onProgress?.({ done: total, total });
}

async function verifyPostgres(url: string, file: string, expected: TableCount[]): Promise<VerifyResult> {
  const entries = await readPgArchive(url, file);
  const scratch = `colloquy_verify_${randomBytes(6).toString('hex')}`;
  await withPgClient(url, async (client) => {
    try {
      await client.query(`create database ${quoteIdent(scratch)} template template0`);
    } catch (err) {
      throw new BackupError(
        `--verify needs to create a scratch database (CREATEDB privilege): ${(err as Error).message}`,
      );
    }
  });
  try {
    await pgRestoreInto(url, scratch, file, entries, [], {});
    const tables = await withPgClient(withDatabaseName(url, scratch), countPgTables);
    const mismatches = compareCounts(expected, tables);
    return { ok: mismatches.length === 0, tables, mismatches };
  } finally {
    await withPgClient(url, async (client) => {
      const drop = `drop database if exists ${quoteIdent(scratch)}`;
      // WITH (FORCE) needs PostgreSQL 13; nothing else is connected to the scratch database anyway.
      await client.query(`${drop} with (force)`).catch(() => client.query(drop));
    });
  }
}

async function restorePostgres(url: string, file: string, options: BackupOptions): Promise<BackupSummary> {
  const entries = await readPgArchive(url, file);
  const database = databaseName(url);
  await pgRestoreInto(url, database, file, entries, ['--clean', '--if-exists'], options);
  const tables = await withPgClient(url, countPgTables);
  return { dialect: 'postgres', file, bytes: statSync(file).size, tables, rows: totalRows(tables) };
}
