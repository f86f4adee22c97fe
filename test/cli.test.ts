import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { parseDatabaseUrl } from '../src/config/database-url.js';
import { openDatabase } from '../src/db/database.js';
import { MIGRATIONS } from '../src/db/migrator.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from './helpers/databases.js';

const ALL = Object.keys(MIGRATIONS).sort();
const LATEST = ALL.at(-1)!;

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const SECRET = 'cli-test-secret-key-0123456789abcdefghijklmnop';
const PASSWORD = 'a-perfectly-fine-password';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI with exactly this environment (nothing inherited) in `cwd`; `input` is piped to stdin. */
function cli(
  args: string[],
  options: { cwd: string; env: Record<string, string>; input?: string },
): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: options.cwd, env: options.env, timeout: 30_000 },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
    child.stdin?.end(options.input ?? '');
  });
}

const baseEnv = (): Record<string, string> => ({
  PATH: process.env.PATH ?? '',
  HOME: process.env.HOME ?? os.homedir(),
});

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** The ordinary life of a database through the CLI, on one dialect. */
function lifecycle(dialect: 'sqlite' | 'postgres') {
  let dir: string;
  let testDb: TestDatabase;
  let env: Record<string, string>;
  const run = (args: string[], input?: string) =>
    cli(args, { cwd: dir, env, ...(input === undefined ? {} : { input }) });
  const email = 'admin@example.com';
  let keyId = '';

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-cli-'));
    testDb =
      dialect === 'sqlite'
        ? { dialect, url: `sqlite:${path.join(dir, 'cli.db')}`, drop: async () => {} }
        : await createTestDatabase('postgres');
    env = { ...baseEnv(), DATABASE_URL: testDb.url, SECRET_KEY: SECRET };
  });
  after(async () => {
    await testDb?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('migrate status shows the pending migration', async () => {
    const r = await run(['migrate', 'status']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /pending\s+0001-initial/);
    assert.match(r.stdout, new RegExp(`${ALL.length} pending`));
    assert.match(r.stderr, new RegExp(`database: ${dialect}`));
  });

  it('commands that need the schema refuse before migrate up', async () => {
    const r = await run(['keys', 'list']);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, new RegExp(`pending migrations \\(${ALL.join(', ')}\\).*migrate up`));
  });

  it('migrate up applies it, and a second up has nothing to do', async () => {
    const r = await run(['migrate', 'up']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`applied: ${ALL.join(', ')}`));
    const again = await run(['migrate', 'up']);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /already up to date/);
  });

  it('migrate status --json is machine-readable', async () => {
    const r = await run(['migrate', 'status', '--json']);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(JSON.parse(r.stdout), {
      applied: ALL,
      pending: [],
      unknown: [],
      compatible: true,
      summary: 'up to date',
      required: LATEST,
    });
  });

  it('after a rollback to an older release: migrate up succeeds on a newer, compatible schema, status tells the truth, a contract one is refused', async () => {
    const database = openDatabase({
      ...parseDatabaseUrl(testDb.url),
      poolSize: 1,
      poolTimeoutMs: 5_000,
      busyTimeoutMs: 5_000,
    });
    const insert = (name: string) =>
      sql`insert into schema_migrations (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
        database.db,
      );
    try {
      await insert('9999-from-the-future');
      const up = await run(['migrate', 'up']);
      assert.equal(up.code, 0, show(up));
      assert.match(up.stdout, /nothing to apply: the database is at a newer, compatible schema/);
      const status = await run(['migrate', 'status']);
      assert.equal(status.code, 0, show(status));
      assert.match(status.stdout, /newer\s+9999-from-the-future/);
      assert.doesNotMatch(status.stdout, /up to date/);

      await insert('9999-zz-drop-old-columns-contract');
      const refused = await run(['migrate', 'up']);
      assert.equal(refused.code, 1, show(refused));
      assert.match(
        refused.stderr,
        /contract migration\(s\) of a newer release \(9999-zz-drop-old-columns-contract\)/,
      );
      const incompatible = await run(['migrate', 'status']);
      assert.equal(incompatible.code, 1, show(incompatible));
      assert.match(incompatible.stdout, /incompatible: /);
    } finally {
      await sql`delete from schema_migrations where name like '9999-%'`.execute(database.db);
      await database.close();
    }
  });

  it('users create reads the password from stdin', async () => {
    const r = await run(
      ['users', 'create', '--email', email, '--password-stdin', '--role', 'admin'],
      `${PASSWORD}\n`,
    );
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`created admin ${email} \\(usr_`));
    assert.ok(!r.stdout.includes(PASSWORD) && !r.stderr.includes(PASSWORD), 'the password is never printed');
  });

  it('a duplicate user fails with a clear message', async () => {
    const r = await run(
      ['users', 'create', '--email', email.toUpperCase(), '--password-stdin'],
      `${PASSWORD}\n`,
    );
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /colloquy: a user with email .* already exists/i);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  });

  it('a weak password is refused', async () => {
    const r = await run(['users', 'create', '--email', 'weak@example.com', '--password-stdin'], 'short\n');
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /password must be at least/);
  });

  it('an email the API would refuse is refused, and no user is created', async () => {
    for (const bad of ['bad-email', 'a@b', 'two@@example.com', ' spaced@example.com']) {
      const r = await run(['users', 'create', '--email', bad, '--password-stdin'], `${PASSWORD}\n`);
      assert.notEqual(r.code, 0, show(r));
      assert.match(r.stderr, /is not a valid email address/, show(r));
    }
    const list = await run(['users', 'list', '--json']);
    const emails = (JSON.parse(list.stdout) as { email: string }[]).map((u) => u.email);
    assert.ok(!emails.some((e) => e.includes('bad-email') || e === 'a@b'), emails.join(', '));
  });

  it('an empty --password-stdin says what was read', async () => {
    const r = await run(['users', 'create', '--email', 'empty@example.com', '--password-stdin'], '');
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /--password-stdin read an empty password/);
  });

  // The root command's own flags (-V, -h) must not be read inside a subcommand's arguments: a random password
  // that happened to begin with "-V" printed the version and exited 0 without creating the user.
  it('a password that begins like a flag of the root command is still the password', async () => {
    for (const [i, password] of ['-VeryLongRandomPassw0rd', '-hLongRandomPassw0rdX'].entries()) {
      const r = await run([
        'users',
        'create',
        '--email',
        `dash${i}@example.com`,
        '--password',
        password,
        '--json',
      ]);
      assert.equal(r.code, 0, show(r));
      assert.equal((JSON.parse(r.stdout) as { email: string }).email, `dash${i}@example.com`);
    }
    const listed = await run(['users', 'list', '--json']);
    const emails = (JSON.parse(listed.stdout) as { email: string }[]).map((u) => u.email);
    assert.ok(emails.includes('dash0@example.com') && emails.includes('dash1@example.com'), listed.stdout);
  });

  it('keys create --json prints a ck- key once', async () => {
    const r = await run(['keys', 'create', '--user', email, '--name', 'ci', '--json']);
    assert.equal(r.code, 0, show(r));
    const created = JSON.parse(r.stdout) as {
      id: string;
      key: string;
      name: string;
      prefix: string;
      revoked_at: null;
    };
    assert.match(created.key, /^ck-[A-Za-z0-9_-]{43}$/);
    assert.match(created.id, /^key_/);
    assert.equal(created.name, 'ci');
    assert.ok(created.key.startsWith(created.prefix));
    assert.equal(created.revoked_at, null);
    assert.equal('key_hash' in created, false);
    keyId = created.id;
  });

  it('keys create for an unknown user fails', async () => {
    const r = await run(['keys', 'create', '--user', 'nobody@example.com', '--name', 'x']);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /no user with email nobody@example.com/);
  });

  it('keys list shows the key as active without the secret', async () => {
    const r = await run(['keys', 'list']);
    assert.equal(r.code, 0, show(r));
    const line = r.stdout.split('\n').find((l) => l.startsWith(keyId));
    assert.ok(line, r.stdout);
    assert.match(line, /active/);
    assert.match(line, /ci$/);
    assert.doesNotMatch(r.stdout, /ck-[A-Za-z0-9_-]{43}/);
  });

  it('keys revoke revokes it', async () => {
    const r = await run(['keys', 'revoke', keyId]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`revoked ${keyId}`));
    const list = await run(['keys', 'list', '--json']);
    assert.equal(list.code, 0, show(list));
    const rows = JSON.parse(list.stdout) as { id: string; revoked_at: string | null }[];
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.id, keyId);
    assert.equal(typeof rows[0]?.revoked_at, 'string');
    const text = await run(['keys', 'list']);
    assert.match(text.stdout, /revoked/);
  });

  it('keys revoke of an unknown id fails', async () => {
    const r = await run(['keys', 'revoke', 'key_doesnotexist']);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /no API key key_doesnotexist/);
  });

  it('migrate down undoes the migration', async () => {
    const r = await run(['migrate', 'down']);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, new RegExp(`undone: ${LATEST}`));
    const status = await run(['migrate', 'status', '--json']);
    assert.equal(status.code, 0, show(status));
    assert.deepEqual((JSON.parse(status.stdout) as { pending: string[] }).pending, [LATEST]);
    for (const name of ALL.slice(0, -1).reverse()) {
      const step = await run(['migrate', 'down']);
      assert.match(step.stdout, new RegExp(`undone: ${name}`), show(step));
    }
    const none = await run(['migrate', 'down']);
    assert.equal(none.code, 0, show(none));
    assert.match(none.stdout, /nothing to undo/);
  });
}

describe('cli on sqlite', () => lifecycle('sqlite'));

describe('cli on postgres', { skip: postgresAvailable() ? false : 'TEST_DATABASE_URL not set' }, () =>
  lifecycle('postgres'),
);

describe('cli configuration errors', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-cli-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a bad PORT exits 2 naming the variable', async () => {
    const r = await cli(['migrate', 'status'], {
      cwd: dir,
      env: {
        ...baseEnv(),
        DATABASE_URL: `sqlite:${path.join(dir, 'x.db')}`,
        SECRET_KEY: SECRET,
        PORT: 'abc',
      },
    });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /^ {2}- PORT: expected .*\(got "abc"\)$/m);
    assert.equal(r.stdout, '');
  });

  it('every problem is reported at once, one line each', async () => {
    const r = await cli(['migrate', 'status'], {
      cwd: dir,
      env: {
        ...baseEnv(),
        DATABASE_URL: `sqlite:${path.join(dir, 'x.db')}`,
        COLLOQUY_ENV: 'production',
        PORT: 'abc',
      },
    });
    assert.equal(r.code, 2, show(r));
    const problems = r.stderr.split('\n').filter((l) => l.startsWith('  - '));
    assert.equal(problems.length, 2, r.stderr);
    assert.ok(
      problems.some((l) => /^ {2}- PORT: /.test(l)),
      r.stderr,
    );
    assert.ok(
      problems.some((l) => /^ {2}- SECRET_KEY: required in production/.test(l)),
      r.stderr,
    );
  });

  it('production without SECRET_KEY exits 2 naming SECRET_KEY', async () => {
    const r = await cli(['serve'], {
      cwd: dir,
      env: { ...baseEnv(), DATABASE_URL: `sqlite:${path.join(dir, 'x.db')}`, COLLOQUY_ENV: 'production' },
    });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /^ {2}- SECRET_KEY: /m);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('  - ')).length, 1, r.stderr);
  });

  it('a short SECRET_KEY and a bad DATABASE_URL are both reported', async () => {
    const r = await cli(['migrate', 'status'], {
      cwd: dir,
      env: { ...baseEnv(), DATABASE_URL: 'mongodb://nope', SECRET_KEY: 'tiny-secret' },
    });
    assert.equal(r.code, 2, show(r));
    assert.match(r.stderr, /^ {2}- SECRET_KEY: expected at least 32 characters \(got 11\)$/m);
    assert.match(r.stderr, /^ {2}- DATABASE_URL: /m);
    assert.ok(!r.stderr.includes('tiny-secret'), 'the secret itself is not printed');
  });

  it('serve in production with pending migrations refuses to start', async () => {
    const r = await cli(['serve'], {
      cwd: dir,
      env: {
        ...baseEnv(),
        DATABASE_URL: `sqlite:${path.join(dir, 'prod.db')}`,
        SECRET_KEY: SECRET,
        COLLOQUY_ENV: 'production',
        PORT: '0',
        HOST: '127.0.0.1',
      },
    });
    assert.notEqual(r.code, 0, show(r));
    assert.notEqual(r.code, null, 'it exited rather than being killed by the timeout');
    assert.match(r.stderr, /pending migrations 0001-initial/);
    assert.match(r.stderr, /migrate up/);
    assert.doesNotMatch(r.stdout, /listening/);
  });
});
