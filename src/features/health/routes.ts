import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import Type from 'typebox';
import type { DatabaseHandle } from '../../db/database.js';
import { migrationStatus, REQUIRED_SCHEMA_VERSION } from '../../db/migrator.js';
import { VERSION } from '../../version.js';

const Check = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('fail'), Type.Literal('skipped')]),
  detail: Type.Optional(Type.String()),
});
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('not_ready')]),
  failing: Type.Array(Type.String(), { description: 'names of the components that are not ready' }),
  checks: Type.Object({ database: Check, schema: Check, redis: Check, lifecycle: Check }),
});

export interface HealthDeps {
  database: DatabaseHandle;
  redis?: Redis | undefined;
  environment: string;
  /** True once shutdown has begun: readiness turns false so load balancers stop sending traffic. */
  isDraining: () => boolean;
}

const CHECK_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)),
      CHECK_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function healthRoutes(app: FastifyInstance, deps: HealthDeps) {
  const startedAt = Date.now();

  app.get(
    '/health',
    {
      logLevel: 'silent',
      schema: {
        tags: ['health'],
        summary: 'Service status, version and uptime',
        response: {
          200: Type.Object({
            status: Type.Literal('ok'),
            version: Type.String(),
            environment: Type.String(),
            uptime_seconds: Type.Number(),
          }),
        },
      },
    },
    async () => ({
      status: 'ok' as const,
      version: VERSION,
      environment: deps.environment,
      uptime_seconds: Math.round((Date.now() - startedAt) / 1000),
    }),
  );

  app.get(
    '/health/live',
    {
      logLevel: 'silent',
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process is up and its event loop turns',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/health/ready',
    {
      logLevel: 'silent',
      schema: {
        tags: ['health'],
        summary:
          'Readiness: database reachable at the required schema version, Redis reachable when configured',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const [database, schema, redis] = await Promise.all([checkDatabase(), checkSchema(), checkRedis()]);
      const lifecycle = deps.isDraining()
        ? { status: 'fail' as const, detail: 'shutting down' }
        : { status: 'ok' as const };
      const checks = { database, schema, redis, lifecycle };
      const failing = Object.entries(checks)
        .filter(([, c]) => c.status === 'fail')
        .map(([name]) => name);
      reply.code(failing.length ? 503 : 200);
      if (failing.length) reply.header('retry-after', '5');
      return { status: failing.length ? ('not_ready' as const) : ('ready' as const), failing, checks };
    },
  );

  async function checkDatabase() {
    try {
      await withTimeout(deps.database.ping(), 'the database');
      return { status: 'ok' as const, detail: deps.database.dialect };
    } catch (err) {
      return { status: 'fail' as const, detail: (err as Error).message };
    }
  }

  async function checkSchema() {
    try {
      const status = await withTimeout(migrationStatus(deps.database.db), 'the database');
      if (!status.compatible) return { status: 'fail' as const, detail: status.summary };
      if (status.pending.length) {
        return {
          status: 'fail' as const,
          detail: `schema ${status.applied.at(-1) ?? 'empty'} is older than the required ${REQUIRED_SCHEMA_VERSION}; run colloquy migrate up`,
        };
      }
      // A newer, compatible schema (after a rollback) is ready, and the detail says so.
      if (status.unknown.length) return { status: 'ok' as const, detail: status.summary };
      return { status: 'ok' as const, detail: REQUIRED_SCHEMA_VERSION };
    } catch (err) {
      return { status: 'fail' as const, detail: (err as Error).message };
    }
  }

  async function checkRedis() {
    if (!deps.redis) return { status: 'skipped' as const, detail: 'REDIS_URL not set' };
    try {
      await withTimeout(deps.redis.ping(), 'Redis');
      return { status: 'ok' as const };
    } catch (err) {
      return { status: 'fail' as const, detail: (err as Error).message };
    }
  }
}
