import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { describeDatabaseTarget, parseDatabaseUrl } from './database-url.js';
import { ConfigError, loadConfig } from './load-config.js';

const SECRET = 'y'.repeat(40);
const target = (env: Record<string, string>) => loadConfig(env, { dotenvDir: null }).database;

describe('database URL resolution', () => {
  it('defaults to ./data/colloquy.db', () => {
    assert.deepEqual(
      { dialect: target({}).dialect, path: (target({}) as { path: string }).path },
      { dialect: 'sqlite', path: path.resolve('data/colloquy.db') },
    );
  });

  it('accepts sqlite:PATH and sqlite://PATH', () => {
    assert.deepEqual(parseDatabaseUrl('sqlite:./x.db'), { dialect: 'sqlite', path: path.resolve('x.db') });
    assert.deepEqual(parseDatabaseUrl('sqlite://./y.db'), { dialect: 'sqlite', path: path.resolve('y.db') });
    assert.deepEqual(parseDatabaseUrl('sqlite:///tmp/z.db'), { dialect: 'sqlite', path: '/tmp/z.db' });
    assert.deepEqual(parseDatabaseUrl('sqlite::memory:'), { dialect: 'sqlite', path: ':memory:' });
  });

  it('accepts postgres:// and postgresql://', () => {
    for (const url of ['postgres://u:p@db:5432/app', 'postgresql://u@db/app']) {
      assert.deepEqual(parseDatabaseUrl(url), { dialect: 'postgres', url });
    }
  });

  it('an explicit DATABASE_URL wins over DB_* parts, even in production', () => {
    const t = target({
      COLLOQUY_ENV: 'production',
      SECRET_KEY: SECRET,
      DATABASE_URL: 'sqlite:/tmp/a.db',
      DB_HOST: 'db',
    });
    assert.equal(t.dialect, 'sqlite');
  });

  it('builds a PostgreSQL URL from DB_* in production, escaping credentials', () => {
    const t = target({
      COLLOQUY_ENV: 'production',
      SECRET_KEY: SECRET,
      DB_HOST: 'db.internal',
      DB_PORT: '6432',
      DB_USER: 'app',
      DB_PASSWORD: 'p@ss/word',
      DB_NAME: 'chat',
    });
    assert.equal(t.dialect, 'postgres');
    assert.equal((t as { url: string }).url, 'postgresql://app:p%40ss%2Fword@db.internal:6432/chat');
  });

  it('ignores DB_* outside production (development keeps SQLite)', () => {
    assert.equal(target({ DB_HOST: 'db.internal' }).dialect, 'sqlite');
  });

  it('carries pool settings', () => {
    const t = target({ DATABASE_URL: 'postgres://db/app', DB_POOL_SIZE: '25', DB_POOL_TIMEOUT: '1500' });
    assert.equal(t.poolSize, 25);
    assert.equal(t.poolTimeoutMs, 1500);
  });

  it('refuses other schemes with a clear error', () => {
    assert.throws(
      () => target({ DATABASE_URL: 'mongodb://db/app' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        /^DATABASE_URL: expected sqlite:PATH, .* mysql:\/\/… or mariadb:\/\/…/.test(err.problems[0]!),
    );
  });

  it('hides the password when describing the target', () => {
    const described = describeDatabaseTarget({
      dialect: 'postgres',
      url: 'postgres://app:hunter2secret@db/app',
    });
    assert.doesNotMatch(described, /hunter2secret/);
    assert.match(described, /app:\*\*\*@db/);
  });
});
