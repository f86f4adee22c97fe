import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { type Config, ConfigError, loadConfig } from '../../src/config/load-config.js';
import { openDatabase } from '../../src/db/database.js';
import { MIGRATIONS, migrateUp } from '../../src/db/migrator.js';
import {
  type DoctorDeps,
  errorTrackingStatus,
  type Finding,
  inspectDatabase,
  runDoctor,
  weakSecretReason,
} from '../../src/ops/doctor.js';
import { createTestDatabase, markSuiteRan, postgresAvailable } from '../helpers/databases.js';

type Env = Record<string, string>;

const strong = () => randomBytes(36).toString('base64url');
const SECRET = strong();
const ADMIN = strong();
const DB_PASSWORD = 'pg-pass-Zq81xV';
const PROD_DB = `postgres://colloquy:${DB_PASSWORD}@db.internal:5432/colloquy`;

/** A production configuration doctor has nothing to say about. */
const prodEnv = (extra: Env = {}): Env => ({
  COLLOQUY_ENV: 'production',
  SECRET_KEY: SECRET,
  DATABASE_URL: PROD_DB,
  OPENAI_API_KEY: 'sk-test',
  HTTPS_ONLY: 'true',
  METRICS_TOKEN: strong(),
  ...extra,
});
const devEnv = (extra: Env = {}): Env => ({ HOST: '127.0.0.1', SECRET_KEY: SECRET, ...extra });

const upToDate: DoctorDeps['inspectDatabase'] = async () => ({ exists: true, pending: [], unknown: [] });
const redisUp: DoctorDeps['pingRedis'] = async () => {};

function load(env: Env): Config | ConfigError {
  try {
    // No container limit, whatever host the tests run on (memory findings are tested with MEMORY_LIMIT).
    return loadConfig(env, { dotenvDir: null, memoryProbe: { v2: null, v1: null } });
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
}

/** Doctor with healthy fakes for the connections unless a test swaps them. */
function doctor(env: Env, deps: DoctorDeps = {}): Promise<Finding[]> {
  return runDoctor(load(env), env, {
    envFile: null,
    inspectDatabase: upToDate,
    pingRedis: redisUp,
    ...deps,
  });
}

const ids = (findings: Finding[]) => findings.map((f) => f.id);
const only = (findings: Finding[], id: string) => {
  const matching = findings.filter((f) => f.id === id);
  assert.equal(matching.length, 1, `expected one ${id} in ${JSON.stringify(findings, null, 2)}`);
  return matching[0]!;
};
const none = (findings: Finding[], id: string) =>
  assert.ok(!ids(findings).includes(id), `unexpected ${id} in ${JSON.stringify(findings, null, 2)}`);

describe('doctor: baseline', () => {
  it('a sound production configuration has no findings at all', async () => {
    assert.deepEqual(await doctor(prodEnv()), []);
  });

  it('a local development set-up has only notes', async () => {
    const findings = await doctor({ HOST: '127.0.0.1' });
    assert.deepEqual(ids(findings).sort(), ['providers.none', 'secret_key.missing']);
    assert.ok(findings.every((f) => f.severity === 'info'));
  });

  it('every finding has a fix, and errors come first', async () => {
    const findings = await doctor(
      prodEnv({ SECRET_KEY: 'changeme'.repeat(5), LOG_LEVEL: 'debug', HOST: '0.0.0.0', METRICS_TOKEN: '' }),
    );
    assert.ok(findings.length >= 3);
    for (const f of findings) {
      assert.ok(f.fix.length > 0 && f.message.length > 0, JSON.stringify(f));
      assert.match(f.severity, /^(error|warning|info)$/);
    }
    const order = findings.map((f) => ({ error: 0, warning: 1, info: 2 })[f.severity]);
    assert.deepEqual(order, [...order].sort());
  });
});

describe('doctor: configuration errors', () => {
  it('become one error finding per problem instead of an exception', async () => {
    const findings = await doctor(prodEnv({ PORT: 'abc', LOG_BACKUP_COUNT: '1000' }));
    const port = only(findings, 'config.PORT');
    assert.equal(port.severity, 'error');
    assert.match(port.message, /^PORT: expected .*\(got "abc"\)/);
    assert.equal(only(findings, 'config.LOG_BACKUP_COUNT').severity, 'error');
  });

  it('an unknown TIMEZONE is an error naming the variable (serve refuses to start with the same line)', async () => {
    const f = only(await doctor(prodEnv({ TIMEZONE: 'Europe/Pariss' })), 'config.TIMEZONE');
    assert.equal(f.severity, 'error');
    assert.match(f.message, /^TIMEZONE: expected an IANA time zone name .*\(got "Europe\/Pariss"/);
    assert.match(f.fix, /refuses to start/);
  });

  it('a --max-old-space-size in NODE_OPTIONS at or above the memory limit is a warning with the size to use', async () => {
    const f = only(
      await doctor(prodEnv({ MEMORY_LIMIT: '512m', NODE_OPTIONS: '--max-old-space-size=4096' })),
      'memory.heap_over_limit',
    );
    assert.equal(f.severity, 'warning');
    assert.match(
      f.message,
      /--max-old-space-size=4096 .* 512 MiB of the 512 MiB memory limit \(MEMORY_LIMIT\)/,
    );
    assert.match(f.fix, /NODE_OPTIONS=--max-old-space-size=384/);
    none(
      await doctor(prodEnv({ MEMORY_LIMIT: '512m', NODE_OPTIONS: '--max-old-space-size=384' })),
      'memory.heap_over_limit',
    );
    assert.deepEqual(await doctor(prodEnv({ MEMORY_LIMIT: '512m' })), [], 'a limit alone is no finding');
  });

  it('on MySQL, missing backup tools are a warning naming them and the package to install', async () => {
    const mysqlEnv = prodEnv({ DATABASE_URL: 'mysql://colloquy:pw@db.internal:3306/colloquy' });
    const f = only(await doctor(mysqlEnv, { onPath: () => false }), 'backup.mysql_tools_missing');
    assert.equal(f.severity, 'warning');
    assert.match(f.message, /^mariadb-dump or mysqldump and mariadb or mysql not found on PATH/);
    assert.match(f.fix, /apt-get install mariadb-client/);
    const onlyMysqlNames = (name: string) => name === 'mysqldump' || name === 'mysql';
    none(await doctor(mysqlEnv, { onPath: onlyMysqlNames }), 'backup.mysql_tools_missing');
    none(await doctor(prodEnv(), { onPath: () => false }), 'backup.mysql_tools_missing');
  });

  it('do not stop the other checks', async () => {
    const findings = await doctor(
      prodEnv({ PORT: 'abc', ALLOW_SIGNUP: 'true', DATABASE_URL: 'sqlite:x.db' }),
    );
    only(findings, 'config.PORT');
    only(findings, 'signup.open');
    only(findings, 'database.sqlite_in_production');
  });

  it('a problem a specific check explains is reported once, by that check', async () => {
    const findings = await doctor(prodEnv({ SECRET_KEY: '' }));
    none(findings, 'config.SECRET_KEY');
    assert.equal(only(findings, 'secret_key.missing').severity, 'error');
  });

  it('an invalid database setting skips the database checks', async () => {
    let called = false;
    const findings = await doctor(prodEnv({ DATABASE_URL: 'mongodb://nope' }), {
      inspectDatabase: async () => {
        called = true;
        return { exists: true, pending: [], unknown: [] };
      },
    });
    only(findings, 'config.DATABASE_URL');
    only(findings, 'database.skipped');
    assert.equal(called, false);
  });

  it('a valid configuration has no config findings', async () => {
    assert.ok(!ids(await doctor(prodEnv())).some((id) => id.startsWith('config.')));
  });
});

describe('doctor: SECRET_KEY', () => {
  it('missing is an error in staging and production, a note in development', async () => {
    for (const env of ['staging', 'production']) {
      const f = only(await doctor(prodEnv({ COLLOQUY_ENV: env, SECRET_KEY: '' })), 'secret_key.missing');
      assert.equal(f.severity, 'error');
    }
    assert.equal(only(await doctor({ HOST: '127.0.0.1' }), 'secret_key.missing').severity, 'info');
    none(await doctor(prodEnv()), 'secret_key.missing');
    none(await doctor(devEnv()), 'secret_key.missing');
  });

  it('short is an error', async () => {
    const findings = await doctor(prodEnv({ SECRET_KEY: 'tiny-Secret-1' }));
    assert.equal(only(findings, 'secret_key.short').severity, 'error');
    none(findings, 'config.SECRET_KEY');
    assert.ok(!JSON.stringify(findings).includes('tiny-Secret-1'), 'the secret is never echoed');
    none(await doctor(prodEnv()), 'secret_key.short');
  });

  it('a known default or low-entropy value is an error in production, a warning in development', async () => {
    for (const weak of [
      'changeme'.repeat(4),
      'my-super-secret-key-for-colloquy-prod',
      'a'.repeat(40),
      'ab'.repeat(20),
      'abcdefghijklmnopqrstuvwxyz0123456789',
      'aaaabbbbccccddddeeeeffffgggghhhhiiii',
    ]) {
      const f = only(await doctor(prodEnv({ SECRET_KEY: weak })), 'secret_key.weak');
      assert.equal(f.severity, 'error', weak);
      assert.ok(!f.message.includes(weak), 'the secret is never echoed');
    }
    assert.equal(
      only(await doctor(devEnv({ SECRET_KEY: 'changeme'.repeat(4) })), 'secret_key.weak').severity,
      'warning',
    );
    none(await doctor(prodEnv()), 'secret_key.weak');
  });

  it('random secrets (base64 and hex) are never called weak', () => {
    for (let i = 0; i < 200; i++) {
      for (const s of [randomBytes(36).toString('base64'), randomBytes(32).toString('hex'), strong()])
        assert.equal(weakSecretReason(s), undefined, s);
    }
  });
});

describe('doctor: COLLOQUY_ADMIN_KEY', () => {
  it('short is an error', async () => {
    const findings = await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: 'short-admin' }));
    assert.equal(only(findings, 'admin_key.short').severity, 'error');
    none(findings, 'config.COLLOQUY_ADMIN_KEY');
  });

  it('equal to SECRET_KEY is an error', async () => {
    const f = only(await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: SECRET })), 'admin_key.same_as_secret');
    assert.equal(f.severity, 'error');
    assert.equal(
      only(await doctor(devEnv({ COLLOQUY_ADMIN_KEY: SECRET })), 'admin_key.same_as_secret').severity,
      'error',
    );
  });

  it('METRICS_TOKEN or a provider key equal to SECRET_KEY or the admin key is an error', async () => {
    const metrics = only(await doctor(prodEnv({ METRICS_TOKEN: SECRET })), 'secrets.reused.metrics_token');
    assert.equal(metrics.severity, 'error');
    assert.match(metrics.message, /METRICS_TOKEN equals SECRET_KEY/);
    assert.ok(!metrics.message.includes(SECRET), 'the secret itself is never printed');
    const admin = await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: ADMIN, METRICS_TOKEN: ADMIN }));
    assert.match(
      only(admin, 'secrets.reused.metrics_token').message,
      /METRICS_TOKEN equals COLLOQUY_ADMIN_KEY/,
    );
    assert.equal(
      only(await doctor(devEnv({ OPENAI_API_KEY: SECRET })), 'secrets.reused.openai_api_key').severity,
      'error',
    );
    // The admin key's own finding is not repeated.
    none(await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: SECRET })), 'secrets.reused.colloquy_admin_key');
  });

  it('a guessable admin key is an error in production', async () => {
    assert.equal(
      only(await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: 'admin-password-'.repeat(3) })), 'admin_key.weak')
        .severity,
      'error',
    );
  });

  it('a distinct random admin key, or none, is fine', async () => {
    for (const findings of [await doctor(prodEnv({ COLLOQUY_ADMIN_KEY: ADMIN })), await doctor(prodEnv())])
      assert.ok(!ids(findings).some((id) => id.startsWith('admin_key.')), JSON.stringify(findings));
  });
});

describe('doctor: environment, logs, CORS', () => {
  it('LOG_LEVEL debug or trace in production is a warning', async () => {
    for (const level of ['debug', 'trace'])
      assert.equal(
        only(await doctor(prodEnv({ LOG_LEVEL: level })), 'log_level.verbose').severity,
        'warning',
      );
    none(await doctor(prodEnv({ LOG_LEVEL: 'info' })), 'log_level.verbose');
    none(await doctor(devEnv({ LOG_LEVEL: 'debug' })), 'log_level.verbose');
    none(await doctor(prodEnv({ COLLOQUY_ENV: 'staging', LOG_LEVEL: 'debug' })), 'log_level.verbose');
  });

  it('development on a public address with NODE_ENV=production is an error', async () => {
    const exposed = {
      COLLOQUY_ENV: 'development',
      NODE_ENV: 'production',
      HOST: '0.0.0.0',
      SECRET_KEY: SECRET,
    };
    assert.equal(only(await doctor(exposed), 'env.development_exposed').severity, 'error');
    none(await doctor({ ...exposed, HOST: '127.0.0.1' }), 'env.development_exposed');
    none(await doctor({ ...exposed, NODE_ENV: '' }), 'env.development_exposed');
    none(await doctor(prodEnv({ NODE_ENV: 'production', HOST: '0.0.0.0' })), 'env.development_exposed');
  });

  it('ALLOWED_ORIGINS containing * in production is an error', async () => {
    for (const origins of ['*', 'https://app.example.com, *', 'https://*.example.com']) {
      const findings = await doctor(prodEnv({ ALLOWED_ORIGINS: origins }));
      assert.equal(only(findings, 'cors.wildcard').severity, 'error', origins);
      none(findings, 'config.ALLOWED_ORIGINS');
    }
    none(
      await doctor(prodEnv({ ALLOWED_ORIGINS: 'https://app.example.com,https://admin.example.com' })),
      'cors.wildcard',
    );
    none(await doctor(devEnv({ ALLOWED_ORIGINS: '*' })), 'cors.wildcard');
  });
});

describe('doctor: database', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('SQLite in production is an error (a warning in staging)', async () => {
    const sqliteUrl = `sqlite:${path.join(dir, 'prod.db')}`;
    assert.equal(
      only(await doctor(prodEnv({ DATABASE_URL: sqliteUrl })), 'database.sqlite_in_production').severity,
      'error',
    );
    assert.equal(
      only(
        await doctor(prodEnv({ COLLOQUY_ENV: 'staging', DATABASE_URL: sqliteUrl })),
        'database.sqlite_in_production',
      ).severity,
      'warning',
    );
    none(await doctor(devEnv({ DATABASE_URL: sqliteUrl })), 'database.sqlite_in_production');
    none(await doctor(prodEnv()), 'database.sqlite_in_production');
  });

  it('a PostgreSQL host on localhost in production is a warning', async () => {
    for (const host of ['localhost', '127.0.0.1'])
      assert.equal(
        only(
          await doctor(prodEnv({ DATABASE_URL: `postgres://u:p@${host}:5432/c` })),
          'database.postgres_localhost',
        ).severity,
        'warning',
      );
    assert.equal(
      only(await doctor(prodEnv({ DATABASE_URL: '', DB_HOST: 'localhost' })), 'database.postgres_localhost')
        .severity,
      'warning',
    );
    none(await doctor(prodEnv()), 'database.postgres_localhost');
    none(
      await doctor(devEnv({ DATABASE_URL: 'postgres://u:p@localhost:5432/c' })),
      'database.postgres_localhost',
    );
  });

  it('an unreachable database is an error that never shows the password', async () => {
    const fake = await doctor(prodEnv(), {
      inspectDatabase: async () => {
        throw new Error(`connect ECONNREFUSED (${PROD_DB})`);
      },
    });
    const f = only(fake, 'database.unreachable');
    assert.equal(f.severity, 'error');
    assert.ok(!JSON.stringify(fake).includes(DB_PASSWORD), JSON.stringify(fake));

    const env = prodEnv({ DATABASE_URL: `postgres://colloquy:${DB_PASSWORD}@127.0.0.1:1/colloquy` });
    const real = await runDoctor(load(env), env, { envFile: null, pingRedis: redisUp });
    assert.equal(only(real, 'database.unreachable').severity, 'error');
    assert.ok(!JSON.stringify(real).includes(DB_PASSWORD), JSON.stringify(real));
    none(await doctor(prodEnv()), 'database.unreachable');
  });

  // The database never answers: without the timeout the doctor would hang, and fail at this bound.
  it('a database that never answers is given up after the timeout', { timeout: 30_000 }, async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const env = prodEnv({ DATABASE_URL: `postgres://u:p@127.0.0.1:${port}/c` });
      const findings = await runDoctor(load(env), env, { envFile: null, pingRedis: redisUp, timeoutMs: 300 });
      assert.equal(only(findings, 'database.unreachable').severity, 'error');
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  it('pending migrations: an error in production, a warning elsewhere', async () => {
    const pending: DoctorDeps['inspectDatabase'] = async () => ({
      exists: true,
      pending: ['0001-initial'],
      unknown: [],
    });
    const prod = only(await doctor(prodEnv(), { inspectDatabase: pending }), 'database.pending_migrations');
    assert.equal(prod.severity, 'error');
    assert.match(prod.message, /0001-initial/);
    assert.equal(
      only(await doctor(devEnv(), { inspectDatabase: pending }), 'database.pending_migrations').severity,
      'warning',
    );
    none(await doctor(prodEnv()), 'database.pending_migrations');
  });

  it('reads the real migration state of a SQLite file without creating it', async () => {
    const file = path.join(dir, 'missing', 'never.db');
    const missing = await inspectDatabase({ dialect: 'sqlite', path: file });
    assert.deepEqual(missing, { exists: false, pending: Object.keys(MIGRATIONS).sort(), unknown: [] });
    const env = devEnv({ DATABASE_URL: `sqlite:${file}` });
    const findings = await runDoctor(load(env), env, { envFile: null });
    assert.match(only(findings, 'database.pending_migrations').message, /does not exist yet/);
    assert.equal(existsSync(file), false, 'doctor changes nothing');
    assert.equal(existsSync(path.dirname(file)), false);

    const migrated = path.join(dir, 'migrated.db');
    const handle = openDatabase({
      dialect: 'sqlite',
      path: migrated,
      poolSize: 1,
      poolTimeoutMs: 1000,
      busyTimeoutMs: 1000,
    });
    await migrateUp(handle.db);
    await handle.close();
    const ok = devEnv({ DATABASE_URL: `sqlite:${migrated}` });
    const clean = await runDoctor(load(ok), ok, { envFile: null });
    none(clean, 'database.pending_migrations');
    none(clean, 'database.unknown_migrations');
    none(clean, 'database.unreachable');
  });

  it('migrations unknown to this version (a newer release ran) are a warning', async () => {
    const file = path.join(dir, 'newer.db');
    const handle = openDatabase({
      dialect: 'sqlite',
      path: file,
      poolSize: 1,
      poolTimeoutMs: 1000,
      busyTimeoutMs: 1000,
    });
    await migrateUp(handle.db);
    await sql`insert into schema_migrations (name, timestamp) values ('9999-from-the-future', '2999-01-01')`.execute(
      handle.db,
    );
    await handle.close();
    const env = devEnv({ DATABASE_URL: `sqlite:${file}` });
    const f = only(await runDoctor(load(env), env, { envFile: null }), 'database.unknown_migrations');
    assert.equal(f.severity, 'warning');
    assert.match(f.message, /9999-from-the-future/);
    assert.match(f.message, /newer, compatible schema/);
    none(await doctor(prodEnv()), 'database.unknown_migrations');
  });

  it('a newer contract migration is an error: this version cannot run on that schema', async () => {
    const file = path.join(dir, 'contract.db');
    const handle = openDatabase({
      dialect: 'sqlite',
      path: file,
      poolSize: 1,
      poolTimeoutMs: 1000,
      busyTimeoutMs: 1000,
    });
    await migrateUp(handle.db);
    await sql`insert into schema_migrations (name, timestamp) values ('9999-drop-old-contract', '2999-01-01')`.execute(
      handle.db,
    );
    await handle.close();
    const env = devEnv({ DATABASE_URL: `sqlite:${file}` });
    const f = only(await runDoctor(load(env), env, { envFile: null }), 'database.unknown_migrations');
    assert.equal(f.severity, 'error');
    assert.match(f.message, /cannot run on \(contract: 9999-drop-old-contract\)/);
  });
});

describe('doctor: a real PostgreSQL', {
  skip: postgresAvailable() ? false : 'TEST_DATABASE_URL not set',
}, () => {
  it('reports pending migrations until they are applied, then nothing', async () => {
    const testDb = await createTestDatabase('postgres');
    try {
      const env = devEnv({ DATABASE_URL: testDb.url });
      const pending = await runDoctor(load(env), env, { envFile: null });
      assert.equal(only(pending, 'database.pending_migrations').severity, 'warning');
      none(pending, 'database.unreachable');
      const handle = openDatabase({ ...(load(env) as Config).database, poolSize: 1 });
      await migrateUp(handle.db);
      await handle.close();
      const clean = await runDoctor(load(env), env, { envFile: null });
      assert.ok(!ids(clean).some((id) => id.startsWith('database.')), JSON.stringify(clean));
    } finally {
      await testDb.drop();
    }
  });
});

describe('doctor: .env permissions', () => {
  let dir: string;
  let file: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-env-'));
    file = path.join(dir, '.env');
    writeFileSync(file, `SECRET_KEY=${SECRET}\n`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('readable by group or others: an error in production, a warning elsewhere', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      chmodSync(file, mode);
      const f = only(await doctor(prodEnv(), { envFile: file, platform: 'linux' }), 'env_file.permissions');
      assert.equal(f.severity, 'error');
      assert.match(f.fix, /chmod 600/);
    }
    chmodSync(file, 0o644);
    assert.equal(
      only(await doctor(devEnv(), { envFile: file, platform: 'linux' }), 'env_file.permissions').severity,
      'warning',
    );
  });

  it('0600 (or 0400), or no .env at all, is fine', async () => {
    for (const mode of [0o600, 0o400]) {
      chmodSync(file, mode);
      none(await doctor(prodEnv(), { envFile: file, platform: 'linux' }), 'env_file.permissions');
    }
    none(await doctor(prodEnv(), { envFile: path.join(dir, 'absent.env') }), 'env_file.permissions');
  });
});

describe('doctor: providers', () => {
  it('the demo model in production is an error', async () => {
    const findings = await doctor(prodEnv({ DEMO_MODEL_ENABLED: 'true' }));
    assert.equal(only(findings, 'demo.enabled_in_production').severity, 'error');
    none(findings, 'config.DEMO_MODEL_ENABLED');

    // The same from a Config that has it on (the check reads providers.demo.enabled).
    const config = load(prodEnv()) as Config;
    const demoOn = { ...config, providers: { ...config.providers, demo: { enabled: true, wordDelayMs: 0 } } };
    const fromConfig = await runDoctor(demoOn, prodEnv(), { envFile: null, inspectDatabase: upToDate });
    only(fromConfig, 'demo.enabled_in_production');

    none(await doctor(prodEnv()), 'demo.enabled_in_production');
    none(await doctor(devEnv({ DEMO_MODEL_ENABLED: 'true' })), 'demo.enabled_in_production');
  });

  it('no provider: an error in production, a warning in staging, a note in development', async () => {
    const bare = prodEnv({ OPENAI_API_KEY: '' });
    assert.equal(only(await doctor(bare), 'providers.none').severity, 'error');
    assert.equal(
      only(await doctor({ ...bare, COLLOQUY_ENV: 'staging' }), 'providers.none').severity,
      'warning',
    );
    const dev = only(await doctor(devEnv()), 'providers.none');
    assert.equal(dev.severity, 'info');
    assert.match(dev.message, /demo model/);
  });

  it('any provider counts: OpenAI key or base URL, Anthropic, or the routing file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-routing-'));
    try {
      const routing = path.join(dir, 'routing.yaml');
      writeFileSync(
        routing,
        'providers:\n  - name: local\n    type: openai\n    base_url: http://127.0.0.1:11434/v1\n' +
          'models:\n  - name: llama\n    deployments:\n      - provider: local\n        model: llama3\n',
      );
      const bare = prodEnv({ OPENAI_API_KEY: '' });
      for (const extra of [
        { OPENAI_API_KEY: 'sk-x' },
        { OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1' },
        { ANTHROPIC_API_KEY: 'sk-ant-x' },
        { COLLOQUY_CONFIG: routing },
      ] as Env[]) {
        // Anthropic's key is tried for real (test/ops/doctor-anthropic.test.ts); here it is taken as accepted.
        const findings = await doctor({ ...bare, ...extra }, { checkCloud: async () => {} });
        none(findings, 'providers.none');
        const expected = 'ANTHROPIC_API_KEY' in extra ? ['cloud.anthropic.ok'] : [];
        assert.deepEqual(ids(findings), expected, JSON.stringify(extra));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('doctor: Redis and replicas', () => {
  it('several replicas or workers without REDIS_URL is an error', async () => {
    for (const extra of [
      { REPLICAS: '3' },
      { WEB_CONCURRENCY: '4' },
      { REPLICAS: '1', WEB_CONCURRENCY: '2' },
      { WORKERS: '2' },
    ] as Env[]) {
      const f = only(await doctor(prodEnv(extra)), 'cluster.no_redis');
      assert.equal(f.severity, 'error');
      assert.match(f.message, /cluster|replica|process/);
    }
    none(await doctor(prodEnv({ REPLICAS: '1' })), 'cluster.no_redis');
    none(await doctor(prodEnv({ REPLICAS: '3', REDIS_URL: 'redis://redis:6379' })), 'cluster.no_redis');
    none(await doctor(prodEnv({ REPLICAS: 'many' })), 'cluster.no_redis');
    none(await doctor(prodEnv({ WORKERS: '1' })), 'cluster.no_redis');
  });

  it('REDIS_URL set but unreachable is an error that never shows the password', async () => {
    const password = 'redis-pass-Hq72Lw';
    const url = `redis://:${password}@127.0.0.1:1/0`;
    const env = prodEnv({ REDIS_URL: url });
    const findings = await runDoctor(load(env), env, { envFile: null, inspectDatabase: upToDate });
    const f = only(findings, 'redis.unreachable');
    assert.equal(f.severity, 'error');
    assert.ok(!JSON.stringify(findings).includes(password), JSON.stringify(findings));

    let pinged = false;
    await doctor(prodEnv(), {
      pingRedis: async () => {
        pinged = true;
      },
    });
    assert.equal(pinged, false, 'no REDIS_URL: nothing to reach');
    none(await doctor(prodEnv({ REDIS_URL: 'redis://redis:6379' })), 'redis.unreachable');
  });

  it('a reachable Redis passes', {
    skip: process.env.TEST_REDIS_URL ? false : 'TEST_REDIS_URL not set',
  }, async () => {
    markSuiteRan('redis');
    const env = prodEnv({ REDIS_URL: process.env.TEST_REDIS_URL!, REPLICAS: '3' });
    const findings = await runDoctor(load(env), env, { envFile: null, inspectDatabase: upToDate });
    assert.deepEqual(findings, []);
  });
});

describe('doctor: HTTP exposure', () => {
  it('HTTPS_ONLY not true in production is a warning', async () => {
    for (const value of ['', 'false'])
      assert.equal(
        only(await doctor(prodEnv({ HTTPS_ONLY: value })), 'https.not_enforced').severity,
        'warning',
      );
    none(await doctor(prodEnv({ HTTPS_ONLY: 'true' })), 'https.not_enforced');
    none(await doctor(devEnv()), 'https.not_enforced');
  });

  it('/metrics without METRICS_TOKEN: an error in production on any HOST, a warning elsewhere on a non-loopback one', async () => {
    for (const host of ['0.0.0.0', '10.0.0.5', '::', '127.0.0.1']) {
      const findings = await doctor(prodEnv({ METRICS_TOKEN: '', HOST: host }));
      assert.equal(only(findings, 'metrics.no_token').severity, 'error');
      assert.match(only(findings, 'metrics.no_token').message, /answers 403/);
      none(findings, 'metrics.unprotected');
    }
    for (const host of ['0.0.0.0', '10.0.0.5', '::'])
      assert.equal(only(await doctor({ HOST: host }), 'metrics.unprotected').severity, 'warning');
    none(await doctor(prodEnv({ HOST: '0.0.0.0' })), 'metrics.no_token');
    none(await doctor(prodEnv({ HOST: '0.0.0.0' })), 'metrics.unprotected');
    for (const host of ['127.0.0.1', 'localhost', '::1'])
      none(await doctor({ HOST: host }), 'metrics.unprotected');
  });

  it('ALLOW_SIGNUP true in production is a warning', async () => {
    assert.equal(only(await doctor(prodEnv({ ALLOW_SIGNUP: 'true' })), 'signup.open').severity, 'warning');
    none(await doctor(prodEnv({ ALLOW_SIGNUP: 'false' })), 'signup.open');
    none(await doctor(prodEnv()), 'signup.open');
    none(await doctor(devEnv({ ALLOW_SIGNUP: 'true' })), 'signup.open');
  });
});

describe('doctor: error tracking', () => {
  it('says in one line whether errors are reported and where, never showing the DSN key', async () => {
    const key = 'f00dfacecafe0123456789abcdef0123';
    assert.equal(errorTrackingStatus(prodEnv()).line, 'error tracking off (SENTRY_DSN unset)');
    const on = errorTrackingStatus(prodEnv({ SENTRY_DSN: `https://${key}@glitchtip.example.com/7` }));
    assert.deepEqual(on, {
      configured: true,
      wellFormed: true,
      line: 'error tracking to https://glitchtip.example.com/7',
    });
    none(
      await doctor(prodEnv({ SENTRY_DSN: `https://${key}@glitchtip.example.com/7` })),
      'error_tracking.dsn_malformed',
    );
    assert.deepEqual(await doctor(prodEnv({ SENTRY_DSN: `https://${key}@sentry.example.com/42` })), []);
  });

  it('a malformed SENTRY_DSN is one error (not repeated as a configuration problem)', async () => {
    const findings = await doctor(prodEnv({ SENTRY_DSN: 'https://sentry.example.com/42' }));
    assert.equal(only(findings, 'error_tracking.dsn_malformed').severity, 'error');
    none(findings, 'config.SENTRY_DSN');
    assert.equal(
      errorTrackingStatus({ SENTRY_DSN: 'sentry.example.com' }).line,
      'error tracking misconfigured (SENTRY_DSN malformed)',
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

function cli(args: string[], cwd: string, env: Env): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      {
        cwd,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.homedir(), ...env },
        timeout: 30_000,
      },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

describe('colloquy doctor (built CLI)', () => {
  let dir: string;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-cli-'));
    const handle = openDatabase({
      dialect: 'sqlite',
      path: path.join(dir, 'ok.db'),
      poolSize: 1,
      poolTimeoutMs: 1000,
      busyTimeoutMs: 1000,
    });
    await migrateUp(handle.db);
    await handle.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const healthy = () => devEnv({ DATABASE_URL: `sqlite:${path.join(dir, 'ok.db')}` });

  it('exits 0 without errors and lists each finding with its severity and fix', async () => {
    const r = await cli(['doctor'], dir, healthy());
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^INFO\s+providers\.none: .*demo model/m);
    assert.match(r.stdout, /^\s+fix: /m);
    assert.match(r.stdout, /^ok: 0 error\(s\)/m);
  });

  it('exits 1 on any error, naming it with its fix', async () => {
    const r = await cli(['doctor'], dir, {
      ...healthy(),
      COLLOQUY_ENV: 'production',
      SECRET_KEY: 'changeme'.repeat(5),
      HTTPS_ONLY: 'true',
      OPENAI_API_KEY: 'sk-x',
    });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /^ERROR\s+secret_key\.weak: /m);
    assert.match(r.stdout, /^ERROR\s+database\.sqlite_in_production: /m);
    assert.match(r.stdout, /^ERROR\s+metrics\.no_token: /m);
    assert.match(r.stdout, /openssl rand/);
    assert.match(r.stdout, /^not ready to deploy: 3 error\(s\)/m);
    assert.ok(!r.stdout.includes('changeme'.repeat(5)), 'the secret is never printed');
  });

  it('prints the memory limit and what it derived from it (MEMORY_LIMIT, or the container limit)', async () => {
    const r = await cli(['doctor'], dir, { ...healthy(), MEMORY_LIMIT: '512m' });
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stdout,
      /^memory limit 512 MiB \(MEMORY_LIMIT\): 503 past .* 461 MiB resident; recommended --max-old-space-size=384$/m,
    );
    const json = await cli(['doctor', '--json'], dir, {
      ...healthy(),
      MEMORY_LIMIT: '2g',
      WORKERS: '2',
      REDIS_URL: 'redis://127.0.0.1:1',
    });
    const parsed = JSON.parse(json.stdout) as { memory: Record<string, unknown> };
    assert.deepEqual(
      [
        parsed.memory.limitBytes,
        parsed.memory.source,
        parsed.memory.workers,
        parsed.memory.maxOldSpaceSizeMb,
      ],
      [2 * 1024 ** 3, 'MEMORY_LIMIT', 2, 768],
    );
  });

  it('--json prints {ok, findings}', async () => {
    const good = await cli(['doctor', '--json'], dir, healthy());
    assert.equal(good.code, 0, show(good));
    const parsed = JSON.parse(good.stdout) as { ok: boolean; findings: Finding[] };
    assert.equal(parsed.ok, true);
    assert.deepEqual(parsed.findings.map((f) => f.id).sort(), ['providers.none']);
    assert.deepEqual(Object.keys(parsed.findings[0]!).sort(), ['fix', 'id', 'message', 'severity']);

    const bad = await cli(['doctor', '--json'], dir, { ...healthy(), REPLICAS: '2' });
    assert.equal(bad.code, 1, show(bad));
    const failed = JSON.parse(bad.stdout) as { ok: boolean; findings: Finding[] };
    assert.equal(failed.ok, false);
    assert.equal(failed.findings.find((f) => f.id === 'cluster.no_redis')?.severity, 'error');
  });

  it('a configuration that serve refuses is reported, not fatal (exit 1, not 2)', async () => {
    const r = await cli(['doctor', '--json'], dir, { ...healthy(), PORT: 'abc' });
    assert.equal(r.code, 1, show(r));
    const parsed = JSON.parse(r.stdout) as { ok: boolean; findings: Finding[] };
    assert.equal(parsed.ok, false);
    assert.match(parsed.findings.find((f) => f.id === 'config.PORT')?.message ?? '', /PORT: expected/);
    const text = await cli(['doctor'], dir, { ...healthy(), PORT: 'abc' });
    assert.equal(text.code, 1, show(text));
    assert.match(text.stdout, /^ERROR\s+config\.PORT: /m);
  });

  it('reads .env in the working directory and checks its permissions', async () => {
    const envDir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-dotenv-'));
    try {
      const file = path.join(envDir, '.env');
      writeFileSync(file, 'ALLOW_SIGNUP=true\nCOLLOQUY_ENV=production\n');
      chmodSync(file, 0o644);
      const env = { ...healthy(), HTTPS_ONLY: 'true', OPENAI_API_KEY: 'sk-x' };
      const r = await cli(['doctor', '--json'], envDir, env);
      assert.equal(r.code, 1, show(r));
      const found = (JSON.parse(r.stdout) as { findings: Finding[] }).findings;
      assert.equal(found.find((f) => f.id === 'env_file.permissions')?.severity, 'error');
      assert.equal(found.find((f) => f.id === 'signup.open')?.severity, 'warning');
      chmodSync(file, 0o600);
      const again = await cli(['doctor', '--json'], envDir, env);
      const after = (JSON.parse(again.stdout) as { findings: Finding[] }).findings;
      assert.ok(!after.some((f) => f.id === 'env_file.permissions'), again.stdout);
    } finally {
      rmSync(envDir, { recursive: true, force: true });
    }
  });
});

describe('doctor: cloud providers', () => {
  it('checks each configured cloud against its endpoint and says what is wrong, one line each', async () => {
    const { startFakeAzure } = await import('../fake-upstream/clouds/azure.js');
    const azure = await startFakeAzure({ apiKey: 'azure-doctor-key-0123456789' });
    try {
      const env = devEnv({
        AZURE_OPENAI_ENDPOINT: azure.url,
        AZURE_OPENAI_API_KEY: 'wrong-azure-key-0123456789',
        MISTRAL_API_KEY: 'mistral-doctor-key-0123',
        MISTRAL_BASE_URL: 'http://127.0.0.1:1/v1',
      });
      const findings = await runDoctor(load(env), env, {
        envFile: null,
        inspectDatabase: upToDate,
        pingRedis: redisUp,
        timeoutMs: 2_000,
      });
      const auth = only(findings, 'cloud.azure.credentials');
      assert.equal(auth.severity, 'error');
      assert.match(auth.message, /^azure: .*refused Colloquy's credentials/);
      assert.doesNotMatch(auth.message, /wrong-azure-key/);
      assert.equal(azure.requests.at(-1)?.path, '/openai/v1/models');
      assert.match(only(findings, 'cloud.mistral.unreachable').message, /^mistral: could not reach/);
      const fixed = { ...env, AZURE_OPENAI_API_KEY: 'azure-doctor-key-0123456789' };
      const good = await runDoctor(load(fixed), fixed, {
        envFile: null,
        inspectDatabase: upToDate,
        pingRedis: redisUp,
        checkCloud: async (provider, timeoutMs) => {
          if (provider.name === 'azure') await provider.checkAccess!(AbortSignal.timeout(timeoutMs));
        },
      });
      assert.equal(only(good, 'cloud.azure.ok').severity, 'info');
      none(good, 'cloud.azure.credentials');
    } finally {
      await azure.close();
    }
  });
});
