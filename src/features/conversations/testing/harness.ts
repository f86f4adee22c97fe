import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from '../../../app.js';
import { type Config, loadConfig } from '../../../config/load-config.js';
import { createLogger } from '../../../core/logger.js';
import { createRedis } from '../../../core/redis.js';
import { type DatabaseHandle, openDatabase } from '../../../db/database.js';
import { migrateUp } from '../../../db/migrator.js';
import type { ChatGateway } from '../../../providers/router/types.js';

export interface HarnessOptions {
  databaseUrl: string;
  gateway: ChatGateway;
  secretKey: string;
  adminKey: string;
  redisUrl?: string | undefined;
  /** false for a second replica on an already-migrated database. */
  migrate?: boolean;
}

export interface Harness {
  app: FastifyInstance;
  config: Config;
  database: DatabaseHandle;
  redis: Redis | undefined;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  /** Listens on 127.0.0.1 with a free port (once) and returns the base URL. */
  listen(): Promise<string>;
  logText(): string;
  close(): Promise<void>;
}

/** The full application (as the test helpers build it) with the gateway of the caller's choice. */
export async function startHarness(options: HarnessOptions): Promise<Harness> {
  const config = loadConfig(
    {
      SECRET_KEY: options.secretKey,
      COLLOQUY_ADMIN_KEY: options.adminKey,
      DATABASE_URL: options.databaseUrl,
      LOG_LEVEL: 'info',
      // Load shedding would turn a slow test machine's event-loop stalls into 503s.
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    },
    { dotenvDir: null },
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
  const app = await buildApp({ config, logger, database, redis, gateway: options.gateway });
  await app.ready();
  let url: string | undefined;
  let closed = false;
  return {
    app,
    config,
    database,
    redis,
    inject: (o) => app.inject(o),
    listen: async () => {
      url ??= await app.listen({ port: 0, host: '127.0.0.1' });
      return url;
    },
    logText: () => text,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await database.close().catch(() => {});
      redis?.disconnect();
    },
  };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Creates a user through the admin API (master key) and signs in. */
export async function createUser(h: Harness, email: string, role: 'admin' | 'user' = 'user') {
  const password = 'a-long-enough-password';
  const created = await h.inject({
    method: 'POST',
    url: '/api/users',
    headers: bearer(h.config.adminKey!),
    payload: { email, password, role },
  });
  if (created.statusCode !== 201)
    throw new Error(`create user failed: ${created.statusCode} ${created.body}`);
  const login = await h.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } });
  if (login.statusCode !== 200) throw new Error(`login failed: ${login.statusCode} ${login.body}`);
  const body = login.json() as { access_token: string; user: { id: string } };
  return { id: body.user.id, email, token: body.access_token };
}
export type TestUser = Awaited<ReturnType<typeof createUser>>;
