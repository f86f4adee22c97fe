import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import SqliteDatabase from 'better-sqlite3';
import { type Kysely, sql } from 'kysely';
import * as mysql from 'mysql2/promise';
import pg from 'pg';
import { type DatabaseTarget, parseDatabaseUrl } from '../../src/config/database-url.js';
import { type DatabaseHandle, openDatabase } from '../../src/db/database.js';
import { migrateUp } from '../../src/db/migrator.js';
import {
  BackupError,
  compareCounts,
  countTargetRows,
  createBackup,
  dataRows,
  defaultBackupFile,
  pgToolEnv,
  redactSecrets,
  restoreBackup,
  verifyBackup,
} from '../../src/ops/backup.js';
import { eventually } from '../helpers/chat-stack.js';
import { createTestDatabase, DIALECTS, postgresAvailable, type TestDatabase } from '../helpers/databases.js';

const open = (target: DatabaseTarget): DatabaseHandle =>
  openDatabase({ ...target, poolSize: 2, poolTimeoutMs: 5_000, busyTimeoutMs: 5_000 });

// biome-ignore lint/suspicious/noExplicitAny: the tests write every table, whatever later migrations add.
type AnyDb = Kysely<any>;
const anyDb = (handle: DatabaseHandle) => handle.db as unknown as AnyDb;

const T0 = '2024-05-01T10:00:00.000Z';
const T1 = '2024-05-02T11:30:00.000Z';

/** Rows in the tables users touch, with the awkward values: NULLs, Unicode, quotes, floats, long text. */
async function seed(db: AnyDb) {
  await db
    .insertInto('users')
    .values([
      {
        id: 'usr_admin',
        email: 'admin@example.com',
        password_hash: '$argon2id$v=19$x',
        role: 'admin',
        display_name: 'Zoë 🚀 "Admin"',
        disabled_at: null,
        created_at: T0,
        updated_at: T0,
      },
      {
        id: 'usr_bob',
        email: 'bob@example.com',
        password_hash: '$argon2id$v=19$y',
        role: 'user',
        display_name: null,
        disabled_at: null,
        created_at: T0,
        updated_at: T1,
      },
      {
        id: 'usr_gone',
        email: 'gone@example.com',
        password_hash: '$argon2id$v=19$z',
        role: 'user',
        display_name: "O'Brien",
        disabled_at: T1,
        created_at: T0,
        updated_at: T1,
      },
    ])
    .execute();
  await db
    .insertInto('refresh_tokens')
    .values([
      {
        id: 'rt_1',
        user_id: 'usr_admin',
        family_id: 'fam_1',
        token_hash: 'h1',
        expires_at: T1,
        revoked_at: null,
        created_at: T0,
      },
      {
        id: 'rt_2',
        user_id: 'usr_bob',
        family_id: 'fam_2',
        token_hash: 'h2',
        expires_at: T1,
        revoked_at: T1,
        created_at: T0,
      },
    ])
    .execute();
  await db
    .insertInto('api_keys')
    .values([
      {
        id: 'key_1',
        user_id: 'usr_admin',
        name: 'ci',
        prefix: 'ck-abcd',
        key_hash: 'kh1',
        expires_at: null,
        last_used_at: T1,
        revoked_at: null,
        created_at: T0,
      },
      {
        id: 'key_2',
        user_id: 'usr_bob',
        name: 'laptop',
        prefix: 'ck-efgh',
        key_hash: 'kh2',
        expires_at: T1,
        last_used_at: null,
        revoked_at: null,
        created_at: T0,
      },
      {
        id: 'key_3',
        user_id: 'usr_bob',
        name: 'old',
        prefix: 'ck-ijkl',
        key_hash: 'kh3',
        expires_at: null,
        last_used_at: null,
        revoked_at: T1,
        created_at: T0,
      },
    ])
    .execute();
  await db
    .insertInto('assistants')
    .values([
      {
        id: 'asst_shared',
        owner_id: null,
        name: 'Tutor',
        description: 'shared',
        system_prompt: 'You teach.\nPatiently.',
        model: 'gpt-4o-mini',
        params: '{"temperature":0.2}',
        created_at: T0,
        updated_at: T0,
      },
      {
        id: 'asst_bob',
        owner_id: 'usr_bob',
        name: 'Mine',
        description: null,
        system_prompt: 'Be brief.',
        model: 'demo',
        params: '{}',
        created_at: T0,
        updated_at: T0,
      },
    ])
    .execute();
  await db
    .insertInto('conversations')
    .values([
      {
        id: 'conv_1',
        user_id: 'usr_bob',
        assistant_id: 'asst_shared',
        title: 'Fractions ½',
        model: 'demo',
        active_leaf_id: 'msg_3',
        created_at: T0,
        updated_at: T1,
      },
      {
        id: 'conv_2',
        user_id: 'usr_admin',
        assistant_id: null,
        title: null,
        model: null,
        active_leaf_id: null,
        created_at: T0,
        updated_at: T0,
      },
    ])
    .execute();
  await db
    .insertInto('messages')
    .values([
      {
        id: 'msg_1',
        conversation_id: 'conv_1',
        parent_id: null,
        role: 'system',
        content: 'You teach.',
        status: 'complete',
        model: null,
        error: null,
        prompt_tokens: null,
        completion_tokens: null,
        created_at: T0,
        updated_at: T0,
      },
      {
        id: 'msg_2',
        conversation_id: 'conv_1',
        parent_id: 'msg_1',
        role: 'user',
        content: 'What is ½ + ¼?\n"quoted" \'single\' \\ backslash',
        status: 'complete',
        model: null,
        error: null,
        prompt_tokens: 12,
        completion_tokens: null,
        created_at: T0,
        updated_at: T0,
      },
      {
        id: 'msg_3',
        conversation_id: 'conv_1',
        parent_id: 'msg_2',
        role: 'assistant',
        content: 'x'.repeat(20_000),
        status: 'partial',
        model: 'demo',
        error: 'cut short',
        prompt_tokens: 12,
        completion_tokens: 4000,
        created_at: T1,
        updated_at: T1,
      },
    ])
    .execute();
  await db
    .insertInto('usage_records')
    .values([
      {
        id: 'use_1',
        request_id: 'req_1',
        user_id: 'usr_bob',
        api_key_id: 'key_2',
        model: 'gpt-4o-mini',
        provider: 'openai',
        deployment: 'primary',
        prompt_tokens: 12,
        completion_tokens: 4000,
        cost_usd: 0.000123456789,
        latency_ms: 812,
        ttft_ms: 95,
        status: 'ok',
        cached: 0,
        retries: 1,
        fallback: 0,
        created_at: T1,
      },
      {
        id: 'use_2',
        request_id: 'req_2',
        user_id: null,
        api_key_id: null,
        model: 'demo',
        provider: null,
        deployment: null,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0,
        latency_ms: null,
        ttft_ms: null,
        status: 'error',
        cached: 1,
        retries: 0,
        fallback: 1,
        created_at: T1,
      },
    ])
    .execute();
}

/** Every row of every table, in a stable order: what "nothing was lost" is checked against. */
async function snapshot(target: DatabaseTarget, db: AnyDb): Promise<Record<string, unknown[]>> {
  const tables = (await countTargetRows(target)) ?? [];
  const out: Record<string, unknown[]> = {};
  for (const { table } of tables) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(table)}`.execute(db);
    out[table] = rows
      .map((r) => JSON.stringify(Object.entries(r).sort(([a], [b]) => a.localeCompare(b))))
      .sort();
  }
  return out;
}

async function mysqlScratchDatabases(): Promise<string[]> {
  const connection = await mysql.createConnection({ uri: process.env.TEST_MYSQL_URL! });
  try {
    const [rows] = await connection.query(
      `select schema_name as name from information_schema.schemata
        where schema_name like 'colloquy\\_verify\\_%' or schema_name like 'colloquy\\_restore\\_%'
           or schema_name like 'colloquy\\_replaced\\_%'`,
    );
    return (rows as { name: string }[]).map((r) => r.name);
  } finally {
    await connection.end();
  }
}

async function pgScratchDatabases(): Promise<string[]> {
  const client = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>(
      `select datname from pg_database where datname like 'colloquy_verify_%'`,
    );
    return rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
}

function lifecycle(dialect: 'sqlite' | 'postgres' | 'mysql') {
  let testDb: TestDatabase;
  let target: DatabaseTarget;
  let handle: DatabaseHandle | undefined;
  let dir: string;
  let file: string;
  let original: Record<string, unknown[]>;
  let counts: { table: string; rows: number }[];

  const db = () => {
    handle ??= open(target);
    return anyDb(handle);
  };
  const closeDb = async () => {
    await handle?.close();
    handle = undefined;
  };

  before(async () => {
    testDb = await createTestDatabase(dialect);
    target = parseDatabaseUrl(testDb.url);
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-'));
    await migrateUp(db());
    await seed(db());
    original = await snapshot(target, db());
  });
  after(async () => {
    await closeDb();
    await testDb?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('backup writes a private file with the row counts of the source', async () => {
    file = path.join(dir, `colloquy.${{ sqlite: 'db', postgres: 'dump', mysql: 'sql' }[dialect]}`);
    const events: number[] = [];
    const summary = await createBackup(target, file, { onProgress: (e) => events.push(e.done / e.total) });
    assert.equal(summary.file, file);
    assert.equal(summary.dialect, dialect);
    assert.equal(summary.bytes, statSync(file).size);
    assert.ok(summary.bytes > 0);
    assert.equal(statSync(file).mode & 0o777, 0o600, 'a backup holds password hashes: owner only');
    const byTable = Object.fromEntries(summary.tables.map((t) => [t.table, t.rows]));
    assert.equal(byTable.users, 3);
    assert.equal(byTable.api_keys, 3);
    assert.equal(byTable.messages, 3);
    assert.equal(byTable.usage_records, 2);
    assert.ok(byTable.schema_migrations! >= 1);
    assert.deepEqual(
      summary.tables.map((t) => t.table).sort(),
      Object.keys(original).sort(),
      'every table is counted',
    );
    assert.equal(
      summary.rows,
      summary.tables.reduce((s, t) => s + t.rows, 0),
    );
    assert.ok(events.length > 0 && events.at(-1) === 1, `progress ends at 100%: ${events}`);
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes('.partial')),
      [],
      'no partial file is left behind',
    );
    counts = summary.tables;
  });

  it('verify restores it into a scratch database with the same counts per table', async () => {
    const result = await verifyBackup(target, file, counts);
    assert.equal(result.ok, true, JSON.stringify(result.mismatches));
    assert.deepEqual(result.mismatches, []);
    assert.deepEqual(result.tables, counts);
    if (dialect === 'postgres')
      assert.deepEqual(await pgScratchDatabases(), [], 'the scratch database is dropped');
    if (dialect === 'mysql')
      assert.deepEqual(await mysqlScratchDatabases(), [], 'the scratch database is dropped');
  });

  it('verify reports a table whose count differs', async () => {
    const wrong = counts.map((t) => (t.table === 'users' ? { ...t, rows: t.rows + 1 } : t));
    const result = await verifyBackup(target, file, wrong);
    assert.equal(result.ok, false);
    assert.deepEqual(result.mismatches, [{ table: 'users', expected: 4, actual: 3 }]);
  });

  it('restore brings back every row after the data was wiped and altered', async () => {
    await db().deleteFrom('usage_records').execute();
    await db().deleteFrom('api_keys').where('id', '=', 'key_1').execute();
    await db()
      .updateTable('users')
      .set({ email: 'changed@example.com', display_name: 'X' })
      .where('id', '=', 'usr_bob')
      .execute();
    await db()
      .insertInto('users')
      .values({
        id: 'usr_new',
        email: 'new@example.com',
        password_hash: 'h',
        role: 'user',
        created_at: T1,
        updated_at: T1,
      })
      .execute();
    await db().updateTable('messages').set({ content: 'overwritten' }).execute();
    assert.notDeepEqual(await snapshot(target, db()), original);

    if (dialect === 'sqlite') {
      // A server with the file open would keep writing to the old one: restore refuses instead.
      await assert.rejects(restoreBackup(target, file), (err: Error) => {
        assert.ok(err instanceof BackupError);
        assert.match(err.message, /in use by another process.*stop it/);
        return true;
      });
      await closeDb();
    }
    const summary = await restoreBackup(target, file);
    assert.equal(
      summary.rows,
      counts.reduce((s, t) => s + t.rows, 0),
    );
    assert.deepEqual(summary.tables, counts);
    await closeDb();
    assert.deepEqual(await snapshot(target, db()), original, 'every row identical');
    if (dialect === 'mysql')
      assert.deepEqual(await mysqlScratchDatabases(), [], 'the scratch and replaced databases are dropped');
    if (dialect === 'sqlite') {
      const leftovers = readdirSync(path.dirname((target as { path: string }).path)).filter((f) =>
        f.includes('.restore-'),
      );
      assert.deepEqual(leftovers, []);
    }
  });

  it('the restored database works: it can be migrated and written', async () => {
    assert.deepEqual(await migrateUp(db()), []);
    await db()
      .insertInto('api_keys')
      .values({
        id: 'key_after',
        user_id: 'usr_admin',
        name: 'after',
        prefix: 'ck-zzzz',
        key_hash: 'khz',
        created_at: T1,
      })
      .execute();
    await db().deleteFrom('api_keys').where('id', '=', 'key_after').execute();
  });

  it('a corrupted backup is refused with a clear error and changes nothing', async () => {
    const bytes = readFileSync(file);
    const garbage = path.join(dir, 'garbage.bak');
    writeFileSync(garbage, randomBytes(bytes.length));
    const truncated = path.join(dir, 'truncated.bak');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const rotten = path.join(dir, 'rotten.bak');
    const damaged = Buffer.from(bytes);
    if (dialect === 'sqlite')
      damaged.fill(0xff, 4096, 8192); // page 2: a table's b-tree
    else damaged.fill(0xff, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 2048);
    writeFileSync(rotten, damaged);
    const empty = path.join(dir, 'empty.bak');
    writeFileSync(empty, '');

    if (dialect === 'sqlite') await closeDb();
    for (const [bad, pattern] of [
      [garbage, /is not a valid backup/],
      [empty, /is not a valid backup/],
      [
        truncated,
        {
          sqlite: /corrupted|integrity check/,
          postgres: /not a valid PostgreSQL backup|pg_restore failed/,
          mysql: /is incomplete/,
        }[dialect],
      ],
      [
        rotten,
        {
          sqlite: /corrupted|integrity check/,
          postgres: /not a valid PostgreSQL backup|pg_restore failed/,
          mysql: /is corrupted: its content does not match the checksum/,
        }[dialect],
      ],
    ] as const) {
      await assert.rejects(restoreBackup(target, bad), (err: Error) => {
        assert.ok(err instanceof BackupError, `${path.basename(bad)}: ${err.stack}`);
        assert.match(err.message, pattern, path.basename(bad));
        return true;
      });
      assert.deepEqual(await snapshot(target, db()), original, `${path.basename(bad)} changed nothing`);
      if (dialect === 'sqlite') await closeDb();
    }
  });

  it('a backup of the other dialect, or of a foreign database, is refused', async () => {
    const other = path.join(dir, 'other.bak');
    writeFileSync(
      other,
      dialect === 'sqlite' ? Buffer.from('PGDMP\x01\x0e\x00rest') : Buffer.from('SQLite format 3\0....'),
    );
    await assert.rejects(restoreBackup(target, other), /but the configured database is/);
    if (dialect === 'sqlite') {
      const foreign = path.join(dir, 'foreign.db');
      const f = new SqliteDatabase(foreign);
      f.exec('create table notes (id integer primary key, body text); insert into notes (body) values (1)');
      f.close();
      await closeDb();
      await assert.rejects(restoreBackup(target, foreign), /not a Colloquy database/);
    }
    await assert.rejects(restoreBackup(target, path.join(dir, 'absent.bak')), /does not exist/);
    assert.deepEqual(await snapshot(target, db()), original);
  });

  it('countTargetRows tells an empty target from one holding data', async () => {
    assert.ok(dataRows((await countTargetRows(target))!) > 0);
    if (dialect === 'sqlite') {
      assert.deepEqual(
        await countTargetRows({ dialect: 'sqlite', path: path.join(dir, 'nope', 'x.db') }),
        [],
      );
      assert.equal(existsSync(path.join(dir, 'nope')), false, 'counting creates nothing');
    }
  });
}

for (const dialect of DIALECTS) describe(`backup and restore on ${dialect}`, () => lifecycle(dialect));

describe('backup of SQLite while another connection writes', () => {
  let dir: string;
  let dbPath: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-live-'));
    dbPath = path.join(dir, 'live.db');
    const handle = open({ dialect: 'sqlite', path: dbPath });
    await migrateUp(handle.db);
    await seed(anyDb(handle));
    // Enough pages that the copy takes many steps.
    const filler = 'lorem ipsum '.repeat(200);
    const db = anyDb(handle);
    for (let i = 0; i < 20; i++) {
      await db
        .insertInto('messages')
        .values(
          Array.from({ length: 100 }, (_, j) => ({
            id: `msg_fill_${i}_${j}`,
            conversation_id: 'conv_2',
            parent_id: null,
            role: 'user',
            content: filler,
            status: 'complete',
            created_at: T0,
            updated_at: T0,
          })),
        )
        .execute();
    }
    await handle.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('yields a consistent snapshot', async () => {
    // A writer thread commits a user and its API key together, as fast as it can, all along the backup.
    const state = new Int32Array(new SharedArrayBuffer(8)); // [stop, commits]
    const writer = new Worker(
      `const { workerData } = require('node:worker_threads');
       const Database = require(workerData.module);
       const db = new Database(workerData.path, { timeout: 5000 });
       db.pragma('journal_mode = WAL');
       db.pragma('foreign_keys = ON');
       const user = db.prepare("insert into users (id, email, password_hash, role, created_at, updated_at) values (?, ?, 'h', 'user', 't', 't')");
       const key = db.prepare("insert into api_keys (id, user_id, name, prefix, key_hash, created_at) values (?, ?, 'w', 'ck-w', ?, 't')");
       const pair = db.transaction((n) => { user.run('usr_w' + n, 'w' + n + '@example.com'); key.run('key_w' + n, 'usr_w' + n, 'kw' + n); });
       for (let n = 0; Atomics.load(workerData.state, 0) === 0; n++) { pair(n); Atomics.store(workerData.state, 1, n + 1); }
       db.close();`,
      {
        eval: true,
        workerData: { module: createRequire(import.meta.url).resolve('better-sqlite3'), path: dbPath, state },
      },
    );
    const exited = new Promise<number>((resolve, reject) => {
      writer.once('exit', resolve);
      writer.once('error', reject);
    });
    try {
      await eventually(() => Atomics.load(state, 1) >= 20, 30_000, 'the writer committed 20 pairs');
      const before = Atomics.load(state, 1);
      const file = path.join(dir, 'live-backup.db');
      const summary = await createBackup({ dialect: 'sqlite', path: dbPath }, file);
      const during = Atomics.load(state, 1) - before;
      Atomics.store(state, 0, 1);
      assert.equal(await exited, 0);
      assert.ok(during > 0, 'the writer committed while the backup ran');

      const copy = new SqliteDatabase(file, { readonly: true });
      try {
        assert.deepEqual(copy.pragma('integrity_check'), [{ integrity_check: 'ok' }]);
        assert.deepEqual(copy.pragma('foreign_key_check'), []);
        const count = (q: string) => copy.prepare(q).pluck().get() as number;
        const users = count(`select count(*) from users where id like 'usr_w%'`);
        const keys = count(`select count(*) from api_keys where id like 'key_w%'`);
        assert.equal(users, keys, 'no half transaction in the copy');
        assert.ok(users >= before, `the copy holds at least the ${before} pairs committed before it began`);
        assert.equal(count('select count(*) from messages'), 2003);
        // The summary describes the very snapshot that was copied.
        const tables = copy
          .prepare(
            `select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`,
          )
          .pluck()
          .all() as string[];
        assert.deepEqual(
          summary.tables,
          tables.map((t) => ({ table: t, rows: count(`select count(*) from "${t}"`) })),
        );
      } finally {
        copy.close();
      }
      const source = new SqliteDatabase(dbPath, { readonly: true });
      const now = source.prepare(`select count(*) from users where id like 'usr_w%'`).pluck().get() as number;
      source.close();
      assert.ok(now > 0);
      assert.equal((await verifyBackup({ dialect: 'sqlite', path: dbPath }, file, summary.tables)).ok, true);
    } finally {
      Atomics.store(state, 0, 1);
      await exited.catch(() => {});
    }
  });
});

describe('backup helpers', () => {
  it('names default files by dialect and UTC time under ./backups', () => {
    const at = new Date('2025-03-04T05:06:07.890Z');
    assert.equal(
      defaultBackupFile('sqlite', at),
      path.resolve('backups/colloquy-sqlite-20250304T050607Z.db'),
    );
    assert.equal(
      defaultBackupFile('postgres', at),
      path.resolve('backups/colloquy-postgres-20250304T050607Z.dump'),
    );
  });

  it('hands the PostgreSQL tools the connection as PG* variables', () => {
    const env = pgToolEnv('postgresql://app%40x:p%3Ass%20w@db.example.com:6543/my_db?sslmode=require');
    assert.equal(env.PGHOST, 'db.example.com');
    assert.equal(env.PGPORT, '6543');
    assert.equal(env.PGUSER, 'app@x');
    assert.equal(env.PGPASSWORD, 'p:ss w');
    assert.equal(env.PGDATABASE, 'my_db');
    assert.equal(env.PGSSLMODE, 'require');
    assert.equal(pgToolEnv('postgres://u@h/db', 'other').PGDATABASE, 'other');
  });

  it('redacts the password from tool output', () => {
    const url = 'postgres://u:hunter2pass@h:5432/db';
    const text = redactSecrets(`could not connect to ${url}: password hunter2pass rejected`, url);
    assert.ok(!text.includes('hunter2pass'), text);
    assert.match(text, /u:\*\*\*@h/);
  });

  it('compares counts table by table', () => {
    assert.deepEqual(
      compareCounts(
        [
          { table: 'a', rows: 1 },
          { table: 'b', rows: 2 },
          { table: 'gone', rows: 0 },
        ],
        [
          { table: 'a', rows: 1 },
          { table: 'b', rows: 3 },
          { table: 'extra', rows: 5 },
        ],
      ),
      [
        { table: 'b', expected: 2, actual: 3 },
        { table: 'extra', expected: null, actual: 5 },
        { table: 'gone', expected: 0, actual: null },
      ],
    );
  });
});

// --- the built CLI -------------------------------------------------------------------------------

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], cwd: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      {
        cwd,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir(), ...env },
        timeout: 60_000,
      },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
const SUMMARY = /\((\d+(\.\d)? (B|KiB|MiB)), (\d+) tables, (\d+) rows\)$/;

function cliLifecycle(dialect: 'sqlite' | 'postgres') {
  let testDb: TestDatabase;
  let dir: string;
  let env: Record<string, string>;
  let backupFile: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-cli-'));
    testDb =
      dialect === 'sqlite'
        ? { dialect, url: `sqlite:${path.join(dir, 'data', 'cli.db')}`, drop: async () => {} }
        : await createTestDatabase('postgres');
    env = { DATABASE_URL: testDb.url, SECRET_KEY: randomBytes(36).toString('base64url') };
    const handle = open(parseDatabaseUrl(testDb.url));
    await migrateUp(handle.db);
    await seed(anyDb(handle));
    await handle.close();
  });
  after(async () => {
    await testDb?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('backup --verify writes ./backups/colloquy-<dialect>-<time> and prints a summary line', async () => {
    const r = await cli(['backup', '--verify'], dir, env);
    assert.equal(r.code, 0, show(r));
    const ext = dialect === 'sqlite' ? 'db' : 'dump';
    const line = r.stdout.trim().split('\n').at(-1)!;
    const match = new RegExp(`^backup: (${dir}/backups/colloquy-${dialect}-\\d{8}T\\d{6}Z\\.${ext}) `).exec(
      line,
    );
    assert.ok(match, line);
    backupFile = match[1]!;
    assert.ok(existsSync(backupFile));
    const summary = SUMMARY.exec(line);
    assert.ok(summary, line);
    assert.equal(Number(summary[4]) >= 7, true);
    assert.match(r.stderr, /verified: \d+ tables/);
    assert.doesNotMatch(r.stderr, /%/, 'no progress output when stderr is not a terminal');
  });

  it('restore refuses a non-empty target without --yes when stdin is not a terminal', async () => {
    const r = await cli(['restore', backupFile], dir, env);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /is not empty \(\d+ rows\); pass --yes/);
  });

  it('restore --yes replaces it and prints a summary line', async () => {
    const r = await cli(['restore', backupFile, '--yes'], dir, env);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout.trim(), new RegExp(`^restored: ${backupFile} `));
    assert.match(r.stdout.trim(), SUMMARY);
  });

  it('restore of a corrupted file fails with a clear message and no stack trace', async () => {
    const bad = path.join(dir, 'bad.bak');
    writeFileSync(bad, readFileSync(backupFile).subarray(0, 100));
    const r = await cli(['restore', bad, '--yes'], dir, env);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /^colloquy: .*(not a valid|corrupted)/m);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
  });

  it('backup --out writes exactly there', async () => {
    const out = path.join(dir, 'nested', 'dir', `mine.${dialect === 'sqlite' ? 'db' : 'dump'}`);
    const r = await cli(['backup', '--out', out], dir, env);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`^backup: ${out} `, 'm'));
    assert.ok(existsSync(out));
  });

  if (dialect === 'sqlite') {
    it('restore into a database that does not exist yet needs no --yes', async () => {
      const fresh = path.join(dir, 'fresh', 'new.db');
      const r = await cli(['restore', backupFile], dir, { ...env, DATABASE_URL: `sqlite:${fresh}` });
      assert.equal(r.code, 0, show(r));
      assert.ok(existsSync(fresh));
    });

    it('a corrupted database can be replaced by a restore', async () => {
      const broken = path.join(dir, 'broken.db');
      const fd = openSync(broken, 'w');
      writeSync(fd, randomBytes(8192));
      closeSync(fd);
      const refused = await cli(['restore', backupFile], dir, { ...env, DATABASE_URL: `sqlite:${broken}` });
      assert.equal(refused.code, 1, show(refused));
      assert.match(refused.stderr, /an unreadable database/);
      const r = await cli(['restore', backupFile, '--yes'], dir, {
        ...env,
        DATABASE_URL: `sqlite:${broken}`,
      });
      assert.equal(r.code, 0, show(r));
    });
  }
}

describe('colloquy backup / restore on sqlite (built CLI)', () => cliLifecycle('sqlite'));

describe(
  'colloquy backup / restore on postgres (built CLI)',
  {
    skip: postgresAvailable() ? false : 'TEST_DATABASE_URL not set',
  },
  () => cliLifecycle('postgres'),
);

describe('colloquy backup never prints the database password', () => {
  it('even when the connection fails', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-pw-'));
    try {
      const password = 'pw-Unique-7781xyz';
      const r = await cli(['backup'], dir, {
        DATABASE_URL: `postgres://colloquy:${password}@127.0.0.1:1/colloquy`,
        SECRET_KEY: randomBytes(36).toString('base64url'),
      });
      assert.equal(r.code, 1, show(r));
      assert.match(r.stderr, /cannot connect to PostgreSQL/);
      assert.ok(!r.stdout.includes(password) && !r.stderr.includes(password), show(r));
      assert.match(r.stderr, /colloquy:\*\*\*@127\.0\.0\.1/, 'the target is named with the password masked');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('backup and restore on MySQL / MariaDB without the client tools', () => {
  it('refuse naming the tools to install, without touching anything', async () => {
    const target = parseDatabaseUrl('mysql://colloquy:pw@127.0.0.1:1/colloquy');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-mysql-backup-'));
    const pathBefore = process.env.PATH;
    process.env.PATH = dir; // no mariadb-dump, mysqldump, mariadb or mysql here
    try {
      const file = path.join(dir, 'colloquy.sql');
      await assert.rejects(createBackup(target, file), (err: Error) => {
        assert.ok(err instanceof BackupError);
        assert.match(
          err.message,
          /mariadb-dump or mysqldump was not found on PATH: .*apt-get install mariadb-client/,
        );
        assert.ok(!err.message.includes('pw'), 'no password');
        return true;
      });
      assert.equal(existsSync(file), false);
      writeFileSync(file, 'not a dump');
      await assert.rejects(
        restoreBackup(target, file),
        /is not a valid backup: expected a MySQL \/ MariaDB SQL dump/,
      );
      assert.equal(readFileSync(file, 'utf8'), 'not a dump');
    } finally {
      process.env.PATH = pathBefore;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
