import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  closeSync,
  createReadStream,
  fstatSync,
  mkdtempSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type * as mysql2 from 'mysql2/promise';
import {
  BackupError,
  type BackupOptions,
  type BackupSummary,
  compareCounts,
  redactSecrets,
  type TableCount,
  totalRows,
  type VerifyResult,
} from './backup.js';

/**
 * MySQL / MariaDB backups with the server's own client tools, as PostgreSQL's use pg_dump: `mariadb-dump`
 * (or `mysqldump`) `--single-transaction` writes a consistent SQL dump without locking InnoDB tables, and
 * `mariadb` (or `mysql`) reads it back. The connection reaches the tools through a 0600 option file that is
 * removed afterwards: the password is never in a command line, the environment or the output.
 *
 * A restore first proves the file complete (the dump's header, a schema_migrations table, the tool's closing
 * "Dump completed" line), loads it into a scratch database and swaps that in at once (restoreMysql), so a
 * truncated, damaged or foreign file changes nothing.
 */

// MariaDB 10.11+ opens with a `/*M!999999\- enable the sandbox mode */` line (older clients refuse the file).
const DUMP_HEADER = /^(\/\*M![^\n]*\n)?-- (MariaDB|MySQL) dump /;
const DUMP_TRAILER = /-- Dump completed( on [^\n]*)?\s*(-- colloquy sha256 [0-9a-f]{64}\n)?$/;
/** The last line `colloquy backup` appends: the SHA-256 of everything before it, so damage anywhere is found. */
const DIGEST_LINE = /-- colloquy sha256 ([0-9a-f]{64})\n$/;

function sha256(file: string, end?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(file, end === undefined ? {} : { end: end - 1 });
    stream.on('error', reject);
    stream.on('data', (chunk) => hash.update(chunk));
    stream.on('end', () => resolve(hash.digest('hex')));
  });
}

/** Refuses a dump whose checksum line does not match its content (a dump taken by hand has none). */
async function assertDigest(file: string) {
  const { tail } = headAndTail(file);
  const match = DIGEST_LINE.exec(tail);
  if (!match) return;
  const size = statSync(file).size;
  const lineBytes = Buffer.byteLength(match[0]);
  if ((await sha256(file, size - lineBytes)) !== match[1])
    throw new BackupError(`${file} is corrupted: its content does not match the checksum written with it`);
}

interface MysqlUrl {
  host: string;
  port: string;
  user: string;
  password: string;
  database: string;
}

function parseMysqlUrl(url: string): MysqlUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new BackupError('DATABASE_URL is not a parseable MySQL URL');
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) throw new BackupError('DATABASE_URL names no database (mysql://user@host:3306/colloquy)');
  return {
    host: decodeURIComponent(u.hostname).replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port || '3306',
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database,
  };
}

const withDatabase = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
};

/** `[client]` options for the tools, in a private temporary directory; call the returned cleanup. */
function optionFile(target: MysqlUrl): { file: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-mysql-'));
  const file = path.join(dir, 'client.cnf');
  const quote = (v: string) => `"${v.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  const lines = ['[client]', `host=${quote(target.host)}`, `port=${target.port}`];
  if (target.user) lines.push(`user=${quote(target.user)}`);
  if (target.password) lines.push(`password=${quote(target.password)}`);
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The first of the candidates found on PATH (MariaDB's names first; MySQL's are links to them there). */
function findTool(candidates: string[]): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of candidates) {
      const full = path.join(dir, name);
      try {
        if (statSync(full).isFile()) return full;
      } catch {
        // not here
      }
    }
  }
  throw new BackupError(
    `${candidates.join(' or ')} was not found on PATH: install the MariaDB or MySQL client tools (Debian: apt-get install mariadb-client)`,
  );
}

interface ToolResult {
  code: number | null;
  stderr: string;
}

function runTool(command: string, args: string[], stdinFile?: string): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [stdinFile ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
    });
    if (stdinFile && child.stdin) {
      const input = createReadStream(stdinFile);
      input.on('error', (err) => child.kill() && reject(err));
      child.stdin.on('error', () => {}); // the tool exiting early is reported by its exit code
      input.pipe(child.stdin);
    }
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const failure = (result: ToolResult, url: string) =>
  redactSecrets(result.stderr.trim().split('\n').slice(-5).join('\n') || `exit code ${result.code}`, url);

async function withConnection<T>(url: string, fn: (c: mysql2.Connection) => Promise<T>): Promise<T> {
  const driver = createRequire(import.meta.url)('mysql2/promise') as typeof mysql2;
  let connection: mysql2.Connection;
  try {
    connection = await driver.createConnection({ uri: url, connectTimeout: 10_000 });
  } catch (err) {
    throw new BackupError(`cannot connect to MySQL: ${redactSecrets((err as Error).message, url)}`, {
      cause: err,
    });
  }
  try {
    return await fn(connection);
  } finally {
    await connection.end().catch(() => {});
  }
}

const quoteIdent = (name: string) => `\`${name.replaceAll('`', '``')}\``;

/** Row counts of every base table of the connection's database. */
export async function countMysqlTables(connection: mysql2.Connection): Promise<TableCount[]> {
  const [rows] = await connection.query(
    `select table_name as name from information_schema.tables
      where table_schema = database() and table_type = 'BASE TABLE' order by table_name`,
  );
  const counts: TableCount[] = [];
  for (const { name } of rows as { name: string }[]) {
    const [result] = await connection.query(`select count(*) as n from ${quoteIdent(name)}`);
    counts.push({ table: name, rows: Number((result as { n: number | string }[])[0]?.n) });
  }
  return counts;
}

export const countMysqlTarget = (url: string) => withConnection(url, countMysqlTables);

export async function backupMysql(url: string, file: string, options: BackupOptions): Promise<BackupSummary> {
  const target = parseMysqlUrl(url);
  const dump = findTool(['mariadb-dump', 'mysqldump']);
  const partial = `${file}.partial-${randomBytes(4).toString('hex')}`;
  const options_ = optionFile(target);
  try {
    options.onProgress?.({ done: 0, total: 2 });
    // Counted just before the dump starts (MySQL cannot hand one snapshot to another session, as PostgreSQL
    // does): with the server writing meanwhile, the dump may hold a few rows more than the summary says.
    const tables = await countMysqlTarget(url);
    options.onProgress?.({ done: 1, total: 2 });
    const result = await runTool(dump, [
      `--defaults-extra-file=${options_.file}`,
      '--single-transaction',
      '--quick',
      '--skip-lock-tables',
      '--no-tablespaces',
      '--hex-blob',
      '--default-character-set=utf8mb4',
      `--result-file=${partial}`,
      target.database,
    ]);
    if (result.code !== 0) throw new BackupError(`${path.basename(dump)} failed:\n${failure(result, url)}`);
    assertMysqlDump(partial, `the dump of ${target.database}`);
    appendFileSync(partial, `-- colloquy sha256 ${await sha256(partial)}\n`);
    chmodSync(partial, 0o600);
    renameSync(partial, file);
    options.onProgress?.({ done: 2, total: 2 });
    return { dialect: 'mysql', file, bytes: statSync(file).size, tables, rows: totalRows(tables) };
  } finally {
    options_.cleanup();
    rmSync(partial, { force: true });
  }
}

/** Reads the first and last few KiB of a file. */
function headAndTail(file: string): { head: string; tail: string } {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 4096));
    readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(size, 4096));
    readSync(fd, tail, 0, tail.length, Math.max(0, size - tail.length));
    return { head: head.toString('utf8'), tail: tail.toString('utf8') };
  } finally {
    closeSync(fd);
  }
}

/** True when the file starts as a mariadb-dump / mysqldump SQL dump does. */
export function isMysqlDump(file: string): boolean {
  return DUMP_HEADER.test(headAndTail(file).head);
}

/** Refuses anything but a complete Colloquy dump: the header, the closing line, a schema_migrations table. */
function assertMysqlDump(file: string, label: string) {
  const { head, tail } = headAndTail(file);
  if (!DUMP_HEADER.test(head))
    throw new BackupError(
      `${label} is not a valid backup: expected a MySQL / MariaDB SQL dump (mariadb-dump)`,
    );
  if (!DUMP_TRAILER.test(tail))
    throw new BackupError(
      `${label} is incomplete: it does not end with the dump tool's "Dump completed" line`,
    );
}

async function loadDump(url: string, database: string, file: string) {
  const target = parseMysqlUrl(url);
  const client = findTool(['mariadb', 'mysql']);
  const options_ = optionFile(target);
  try {
    const result = await runTool(
      client,
      [`--defaults-extra-file=${options_.file}`, '--default-character-set=utf8mb4', `--database=${database}`],
      file,
    );
    if (result.code !== 0) throw new BackupError(`${path.basename(client)} failed:\n${failure(result, url)}`);
  } finally {
    options_.cleanup();
  }
}

async function assertColloquyDump(file: string) {
  assertMysqlDump(file, `the backup ${file}`);
  await assertDigest(file);
  // A Colloquy database has its migrations table; the dump names each table in a CREATE TABLE.
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1024 * 1024);
    let position = 0;
    let carry = '';
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, position);
      if (n === 0) break;
      const text = carry + chunk.subarray(0, n).toString('utf8');
      if (/CREATE TABLE `schema_migrations`/.test(text)) return;
      carry = text.slice(-64);
      position += n;
    }
  } finally {
    closeSync(fd);
  }
  throw new BackupError(`${file} is not a Colloquy database (it has no schema_migrations table)`);
}

/**
 * Loads the dump into a scratch database first (a dump that fails to load changes nothing), then swaps it in
 * with one RENAME TABLE, which MySQL applies atomically: the target's tables move out to a database that is
 * dropped, the scratch's move in. The target then holds exactly the backup's tables.
 */
export async function restoreMysql(
  url: string,
  file: string,
  options: BackupOptions,
): Promise<BackupSummary> {
  await assertColloquyDump(file);
  const { database } = parseMysqlUrl(url);
  const suffix = randomBytes(6).toString('hex');
  const scratch = `colloquy_restore_${suffix}`;
  const replaced = `colloquy_replaced_${suffix}`;
  options.onProgress?.({ done: 0, total: 3 });
  await createScratch(url, scratch, 'restore');
  try {
    try {
      await loadDump(url, scratch, file);
    } catch (err) {
      throw new BackupError(`${(err as Error).message}\nthe backup did not load: nothing was changed`, {
        cause: err,
      });
    }
    options.onProgress?.({ done: 1, total: 3 });
    await withConnection(url, async (c) => {
      const tablesOf = async (schema: string) => {
        const [rows] = await c.query(
          `select table_name as name from information_schema.tables
            where table_schema = ? and table_type = 'BASE TABLE' order by table_name`,
          [schema],
        );
        return (rows as { name: string }[]).map((r) => r.name);
      };
      const [current, incoming] = await Promise.all([tablesOf(database), tablesOf(scratch)]);
      await c.query(`create database ${quoteIdent(replaced)}`);
      const moves = [
        ...current.map(
          (t) => `${quoteIdent(database)}.${quoteIdent(t)} to ${quoteIdent(replaced)}.${quoteIdent(t)}`,
        ),
        ...incoming.map(
          (t) => `${quoteIdent(scratch)}.${quoteIdent(t)} to ${quoteIdent(database)}.${quoteIdent(t)}`,
        ),
      ];
      await c.query('set foreign_key_checks = 0');
      await c.query(`rename table ${moves.join(', ')}`);
    });
    options.onProgress?.({ done: 2, total: 3 });
  } finally {
    await withConnection(url, async (c) => {
      await c.query('set foreign_key_checks = 0');
      await c.query(`drop database if exists ${quoteIdent(scratch)}`);
      await c.query(`drop database if exists ${quoteIdent(replaced)}`);
    });
  }
  const tables = await countMysqlTarget(url);
  options.onProgress?.({ done: 3, total: 3 });
  return { dialect: 'mysql', file, bytes: statSync(file).size, tables, rows: totalRows(tables) };
}

async function createScratch(url: string, name: string, purpose: 'restore' | '--verify') {
  await withConnection(url, async (c) => {
    try {
      await c.query(`create database ${quoteIdent(name)} character set utf8mb4 collate utf8mb4_bin`);
    } catch (err) {
      throw new BackupError(
        `${purpose} needs to create a scratch database (CREATE and DROP privileges): ${redactSecrets((err as Error).message, url)}`,
      );
    }
  });
}

/** Loads the dump into a scratch database (CREATE privilege needed), counts, drops it. */
export async function verifyMysql(url: string, file: string, expected: TableCount[]): Promise<VerifyResult> {
  await assertColloquyDump(file);
  const scratch = `colloquy_verify_${randomBytes(6).toString('hex')}`;
  await createScratch(url, scratch, '--verify');
  try {
    await loadDump(url, scratch, file);
    const tables = await countMysqlTarget(withDatabase(url, scratch));
    const mismatches = compareCounts(expected, tables);
    return { ok: mismatches.length === 0, tables, mismatches };
  } finally {
    await withConnection(url, (c) => c.query(`drop database if exists ${quoteIdent(scratch)}`));
  }
}
