import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config/load-config.js';
import type { ErrorBody } from '../../src/core/errors.js';
import { createLogger } from '../../src/core/logger.js';
import { createRedis, waitForRedis } from '../../src/core/redis.js';
import { type DatabaseHandle, openDatabase } from '../../src/db/database.js';
import { migrateUp } from '../../src/db/migrator.js';
import type { ChatGateway } from '../../src/providers/router/types.js';
import { createTestDatabase, type TestDatabase, type TestDialect } from './databases.js';

export const TEST_SECRET = 'test-secret-key-that-is-long-enough-0123456789';
export const TEST_MASTER_KEY = 'master-key-for-tests-0123456789abcdefghijkl';

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  database: DatabaseHandle;
  testDb: TestDatabase;
  redis: Redis | undefined;
  /** Every log line written so far, parsed. */
  logLines(): Record<string, unknown>[];
  /** The raw log output, for greps. */
  logText(): string;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  /** Listens on 127.0.0.1 with a free port (once) and returns the base URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  dialect?: TestDialect;
  env?: Record<string, string>;
  /** false for a second replica on an already-migrated database. */
  migrate?: boolean;
  isDraining?: () => boolean;
  /** A database the caller owns (shared by replicas, dropped by the caller); otherwise a fresh one. */
  testDb?: TestDatabase;
  /** The gateway of the caller's choice instead of the configured providers. */
  gateway?: ChatGateway;
  /** A clock (epoch ms) for session lengths (the break reminder). */
  now?: () => number;
  /** See AppDeps.fallbackReloadMs. */
  fallbackReloadMs?: number;
}

/** A full application on a fresh database, logging JSON into memory. Call close() (or use t.after). */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const testDb = options.testDb ?? (await createTestDatabase(options.dialect ?? 'sqlite'));
  const config = loadConfig(
    {
      SECRET_KEY: TEST_SECRET,
      COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
      DATABASE_URL: testDb.url,
      LOG_LEVEL: 'debug',
      // The test machine is shared by parallel suites; overload shedding is tested on its own.
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...options.env,
    },
    // No container memory limit, whatever host runs the tests: memory-based shedding is tested on its own.
    { dotenvDir: null, memoryProbe: { v2: null, v1: null } },
  );
  let text = '';
  const destination = new Writable({
    write(chunk, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const logger = createLogger({
    ...config.log,
    format: 'json',
    secrets: [config.secretKey, config.adminKey],
    destination,
  });
  const database = openDatabase(config.database);
  if (options.migrate !== false) await migrateUp(database.db);
  const redis = config.redisUrl ? createRedis(config.redisUrl, logger) : undefined;
  if (redis) await waitForRedis(redis, 2_000);
  const cacheRedis = config.cacheRedisUrl ? createRedis(config.cacheRedisUrl, logger) : undefined;
  if (cacheRedis) await waitForRedis(cacheRedis, 2_000);
  const app = await buildApp({
    config,
    logger,
    database,
    redis,
    cacheRedis,
    gateway: options.gateway,
    isDraining: options.isDraining,
    now: options.now,
    fallbackReloadMs: options.fallbackReloadMs,
  });
  await app.ready();
  let url: string | undefined;
  let closed = false;
  return {
    app,
    config,
    database,
    testDb,
    redis,
    logText: () => text,
    logLines: () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    inject: (o) => app.inject(o),
    listen: async () => {
      url ??= await app.listen({ port: 0, host: '127.0.0.1' });
      return url;
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await database.close().catch(() => {});
      redis?.disconnect();
      cacheRedis?.disconnect();
      if (!options.testDb) await testDb.drop();
    },
  };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Asserts the status and the `{error:{message,type,code,param}}` body (param too, when given); returns the error. */
export function assertError(
  res: LightMyRequestResponse,
  status: number,
  code: string,
  param?: string | null,
): ErrorBody['error'] {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode} ${res.body}`);
  const body = res.json() as ErrorBody;
  assert.deepEqual(Object.keys(body), ['error']);
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(body.error.code, code);
  assert.ok(body.error.message.length > 0);
  if (param !== undefined) assert.equal(body.error.param, param);
  return body.error;
}

/** Signs up (first user becomes admin) or creates via the master key, then logs in. */
export async function createUser(
  t: TestApp,
  email: string,
  role: 'admin' | 'user' = 'user',
  password = 'a-long-enough-password',
) {
  const created = await t.inject({
    method: 'POST',
    url: '/api/users',
    headers: bearer(TEST_MASTER_KEY),
    payload: { email, password, role },
  });
  if (created.statusCode !== 201)
    throw new Error(`create user failed: ${created.statusCode} ${created.body}`);
  const login = await t.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
  const body = login.json() as { access_token: string; refresh_token: string; user: { id: string } };
  return {
    id: body.user.id,
    email,
    password,
    accessToken: body.access_token,
    refreshToken: body.refresh_token,
  };
}
export type TestUser = Awaited<ReturnType<typeof createUser>>;
