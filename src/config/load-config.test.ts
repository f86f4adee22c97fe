import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VERSION } from '../version.js';
import { ConfigError, loadConfig } from './load-config.js';
import { EnvSchema } from './schema.js';

const SECRET = 'x'.repeat(40);
const load = (env: Record<string, string>) => loadConfig(env, { dotenvDir: null });

function problemsOf(env: Record<string, string>): string[] {
  try {
    load(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
  assert.fail('expected the configuration to be refused');
}

describe('loadConfig', () => {
  it('starts with no configuration at all in development, with a generated secret', () => {
    const config = load({});
    assert.equal(config.env, 'development');
    assert.equal(config.port, 8000);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.secretKeyGenerated, true);
    assert.ok(config.secretKey.length >= 32);
    assert.equal(config.log.format, 'pretty');
    assert.equal(config.log.level, 'debug');
    assert.equal(config.autoMigrate, true);
    assert.equal(config.auth.allowSignup, true);
    assert.equal(config.database.dialect, 'sqlite');
  });

  it('derives the environment from COLLOQUY_ENV, else NODE_ENV', () => {
    assert.equal(load({ NODE_ENV: 'production', SECRET_KEY: SECRET }).env, 'production');
    assert.equal(load({ NODE_ENV: 'test' }).env, 'development');
    assert.equal(
      load({ NODE_ENV: 'production', COLLOQUY_ENV: 'staging', SECRET_KEY: SECRET }).env,
      'staging',
    );
  });

  it('uses strict defaults in production: JSON info logs, no auto-migrate, closed sign-up', () => {
    const config = load({ COLLOQUY_ENV: 'production', SECRET_KEY: SECRET });
    assert.equal(config.log.format, 'json');
    assert.equal(config.log.level, 'info');
    assert.equal(config.autoMigrate, false);
    assert.equal(config.auth.allowSignup, false);
  });

  it('requires a long SECRET_KEY in staging and production', () => {
    for (const env of ['staging', 'production']) {
      const [problem] = problemsOf({ COLLOQUY_ENV: env });
      assert.match(problem!, /^SECRET_KEY: required in/);
    }
    assert.match(
      problemsOf({ SECRET_KEY: 'short' })[0]!,
      /^SECRET_KEY: expected at least 32 characters \(got 5\)/,
    );
  });

  it('reports every bad variable, one line each, naming what is expected', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      LOG_FORMAT: 'xml',
      COLLOQUY_ENV: 'prod',
      ALLOW_SIGNUP: 'maybe',
      DB_POOL_SIZE: '0',
    });
    assert.equal(problems.length, 5, problems.join('\n'));
    const byVar = Object.fromEntries(problems.map((p) => [p.split(':')[0], p]));
    assert.match(byVar.PORT!, /expected a TCP port.*\(got "eighty"\)/);
    assert.match(byVar.LOG_FORMAT!, /expected pretty, json or ecs/);
    assert.match(byVar.COLLOQUY_ENV!, /expected one of development, staging, production/);
    assert.match(byVar.ALLOW_SIGNUP!, /expected true or false/);
    assert.match(byVar.DB_POOL_SIZE!, /expected the PostgreSQL pool size/);
  });

  it('reads WORKERS: 1 by default, a count, or auto (one per core); anything else is refused', () => {
    assert.equal(load({}).workers, 1);
    assert.equal(load({ WORKERS: '3' }).workers, 3);
    assert.equal(load({ WORKERS: 'auto' }).workers, Math.min(64, os.availableParallelism()));
    for (const bad of ['0', '65', 'all', '-1', '2.5']) {
      const [problem] = problemsOf({ WORKERS: bad });
      assert.match(
        problem ?? '',
        /^WORKERS: expected worker processes serving the port: an integer from 1 to 64, or auto/,
      );
    }
  });

  it('reads TIMEZONE: UTC by default, an IANA name (canonical), anything else refused with what is expected', () => {
    assert.equal(load({}).timeZone, 'UTC');
    assert.equal(load({ TIMEZONE: 'Asia/Shanghai' }).timeZone, 'Asia/Shanghai');
    assert.equal(load({ TIMEZONE: 'utc' }).timeZone, 'UTC');
    for (const bad of ['Mars/Olympus_Mons', 'Europe/Pariss', 'GMT+25']) {
      const [problem] = problemsOf({ TIMEZONE: bad });
      assert.match(
        problem ?? '',
        new RegExp(
          `^TIMEZONE: expected an IANA time zone name such as Europe/Paris.*\\(got "${bad.replace('+', '\\+')}"`,
        ),
      );
    }
  });

  it('never prints a secret value in its errors', () => {
    const message = problemsOf({ COLLOQUY_ADMIN_KEY: 'too-short-master', PORT: 'x' }).join('\n');
    assert.doesNotMatch(message, /too-short-master/);
  });

  it('configures error tracking only with a well-formed SENTRY_DSN, with validated sample rates', () => {
    assert.equal(load({}).errorTracking, undefined);
    const on = load({ SENTRY_DSN: 'https://abc123@glitchtip.example.com/7', COLLOQUY_TRACK: 'canary' });
    assert.deepEqual(on.errorTracking, {
      dsn: 'https://abc123@glitchtip.example.com/7',
      environment: 'development',
      release: `colloquy@${VERSION}`,
      track: 'canary',
      sampleRate: 1,
      tracesSampleRate: 0,
    });
    const problems = problemsOf({
      SENTRY_DSN: 'https://sentry.example.com/7',
      SENTRY_SAMPLE_RATE: '1.5',
      SENTRY_TRACES_SAMPLE_RATE: 'often',
    });
    for (const name of ['SENTRY_DSN', 'SENTRY_SAMPLE_RATE', 'SENTRY_TRACES_SAMPLE_RATE'])
      assert.ok(
        problems.some((p) => p.startsWith(`${name}:`)),
        `${name} refused: ${problems.join('\n')}`,
      );
    assert.equal(
      load({ SENTRY_DSN: 'https://k@s.example.com/1', SENTRY_SAMPLE_RATE: '0.25' }).errorTracking?.sampleRate,
      0.25,
    );
  });

  it('treats empty variables as unset', () => {
    assert.equal(load({ PORT: '', LOG_LEVEL: '' }).port, 8000);
  });

  it('reads .env when present, and the real environment wins over it', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-env-'));
    writeFileSync(path.join(dir, '.env'), 'PORT=9100\nLOG_LEVEL=warn\n');
    const config = loadConfig({ LOG_LEVEL: 'error' }, { dotenvDir: dir });
    assert.equal(config.port, 9100);
    assert.equal(config.log.level, 'error');
  });

  it('is frozen', () => {
    const config = load({});
    assert.throws(() => {
      (config as { port: number }).port = 1;
    });
    assert.throws(() => {
      (config.auth as { allowSignup: boolean }).allowSignup = false;
    });
  });

  it('.env.example documents every variable the schema reads', () => {
    const example = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
    const documented = new Set([...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]));
    for (const name of Object.keys(EnvSchema.properties)) assert.ok(documented.has(name), `${name} missing`);
    for (const name of documented)
      assert.ok(name! in EnvSchema.properties, `${name} is documented but not read`);
  });
});
