import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { migrateDown, REQUIRED_SCHEMA_VERSION } from '../../src/db/migrator.js';
import { startTestApp, type TestApp } from '../helpers/app.js';
import { DIALECTS, dropPostgresDatabase, markSuiteRan } from '../helpers/databases.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

interface Readiness {
  status: 'ready' | 'not_ready';
  failing: string[];
  checks: Record<'database' | 'schema' | 'redis' | 'lifecycle', { status: string; detail?: string }>;
}

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}

function assertErrorShape(body: unknown, code: string) {
  const { error } = body as ErrorBody;
  assert.equal(typeof error, 'object');
  assert.equal(error.code, code);
  assert.equal(typeof error.message, 'string');
  assert.ok(error.message.length > 0);
  assert.equal(typeof error.type, 'string');
  assert.ok(error.param === null || typeof error.param === 'string');
}

/** Every local $ref in the document must point at something that exists. */
function unresolvedRefs(doc: unknown): string[] {
  const missing: string[] = [];
  const resolve = (ref: string) =>
    ref
      .slice(2)
      .split('/')
      .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce<unknown>(
        (node, key) =>
          node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined,
        doc,
      );
  const walk = (node: unknown) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (!node || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') {
        if (!value.startsWith('#/') || resolve(value) === undefined) missing.push(value);
      } else walk(value);
    }
  };
  walk(doc);
  return missing;
}

for (const dialect of DIALECTS) {
  describe(dialect, () => {
    describe('health endpoints', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(async () => {
        await t?.close();
      });

      it('GET /health reports ok, the package version and uptime', async () => {
        const res = await t.inject({ method: 'GET', url: '/health' });
        assert.equal(res.statusCode, 200);
        const body = res.json() as Record<string, unknown>;
        assert.equal(body.status, 'ok');
        assert.equal(body.version, pkg.version);
        assert.equal(body.environment, 'development');
        assert.equal(typeof body.uptime_seconds, 'number');
        assert.ok((body.uptime_seconds as number) >= 0);
      });

      it('GET /health/live is ok', async () => {
        const res = await t.inject({ method: 'GET', url: '/health/live' });
        assert.equal(res.statusCode, 200);
        assert.deepEqual(res.json(), { status: 'ok' });
      });

      it('GET /health/ready is 200 with every check', async () => {
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(res.statusCode, 200);
        const body = res.json() as Readiness;
        assert.equal(body.status, 'ready');
        assert.deepEqual(body.failing, []);
        assert.deepEqual(body.checks.database, { status: 'ok', detail: dialect });
        assert.equal(body.checks.schema.status, 'ok');
        assert.equal(body.checks.schema.detail, REQUIRED_SCHEMA_VERSION);
        assert.equal(body.checks.redis.status, 'skipped');
        assert.equal(body.checks.lifecycle.status, 'ok');
        assert.equal(res.headers['retry-after'], undefined);
      });

      it('keeps a safe incoming X-Request-Id on every response', async () => {
        const requests = [
          { method: 'GET', url: '/health' },
          { method: 'GET', url: '/health/live' },
          { method: 'GET', url: '/health/ready' },
          { method: 'GET', url: '/no/such/route' },
          {
            method: 'POST',
            url: '/api/auth/login',
            headers: { 'content-type': 'application/json' },
            payload: '{not json',
          },
        ] as const;
        for (const [i, request] of requests.entries()) {
          const id = `client.req-${i}:abc_DEF`;
          const res = await t.inject({
            ...request,
            headers: { ...('headers' in request ? request.headers : {}), 'x-request-id': id },
          });
          assert.equal(res.headers['x-request-id'], id, `${request.method} ${request.url}`);
        }
      });

      it('generates an id when none is sent', async () => {
        const a = await t.inject({ method: 'GET', url: '/health' });
        const b = await t.inject({ method: 'GET', url: '/no/such/route' });
        for (const res of [a, b]) {
          assert.equal(typeof res.headers['x-request-id'], 'string');
          assert.match(res.headers['x-request-id'] as string, /^[A-Za-z0-9._:-]{1,128}$/);
        }
        assert.notEqual(a.headers['x-request-id'], b.headers['x-request-id']);
      });

      it('replaces an unsafe incoming X-Request-Id', async () => {
        for (const unsafe of ['has spaces in it', 'x'.repeat(129), 'semi;colon', 'new\tline', 'quote"d']) {
          for (const url of ['/health', '/no/such/route']) {
            const res = await t.inject({ method: 'GET', url, headers: { 'x-request-id': unsafe } });
            const echoed = res.headers['x-request-id'];
            assert.equal(typeof echoed, 'string');
            assert.notEqual(echoed, unsafe);
            assert.match(echoed as string, /^[A-Za-z0-9._:-]{1,128}$/);
          }
        }
        // 128 characters is still acceptable.
        const longest = 'y'.repeat(128);
        const res = await t.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': longest } });
        assert.equal(res.headers['x-request-id'], longest);
      });

      it('/openapi.json is an OpenAPI 3 document with the routes and bearerAuth', async () => {
        const res = await t.inject({ method: 'GET', url: '/openapi.json' });
        assert.equal(res.statusCode, 200);
        assert.match(String(res.headers['content-type']), /application\/json/);
        const doc = res.json() as {
          openapi: string;
          info: { title: string; version: string };
          paths: Record<
            string,
            Record<string, { security?: Record<string, string[]>[]; responses?: unknown }>
          >;
          components: { securitySchemes: Record<string, { type: string; scheme?: string }> };
        };
        assert.match(doc.openapi, /^3\.\d+\.\d+$/);
        assert.equal(typeof doc.info.title, 'string');
        assert.equal(doc.info.version, pkg.version);
        assert.ok(doc.paths['/api/auth/login']?.post, 'POST /api/auth/login listed');
        assert.ok(doc.paths['/api/keys'], '/api/keys listed');
        assert.ok(doc.paths['/health/ready']?.get, 'GET /health/ready listed');
        assert.equal(doc.paths['/openapi.json'], undefined, '/openapi.json itself is hidden');
        assert.deepEqual(
          {
            type: doc.components.securitySchemes.bearerAuth?.type,
            scheme: doc.components.securitySchemes.bearerAuth?.scheme,
          },
          { type: 'http', scheme: 'bearer' },
        );
        const keyOps = Object.values(doc.paths['/api/keys'] ?? {});
        assert.ok(keyOps.length > 0);
        for (const op of keyOps) assert.deepEqual(op.security, [{ bearerAuth: [] }]);
        // Every security requirement names a declared scheme, every operation declares responses.
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            assert.ok(op.responses, `${method} ${path} has responses`);
            for (const requirement of op.security ?? []) {
              for (const name of Object.keys(requirement))
                assert.ok(doc.components.securitySchemes[name], name);
            }
          }
        }
        assert.deepEqual(unresolvedRefs(doc), []);
      });

      it('/docs serves HTML', async () => {
        let res = await t.inject({ method: 'GET', url: '/docs' });
        if (res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
          res = await t.inject({
            method: 'GET',
            url: new URL(String(res.headers.location), 'http://x/docs').pathname,
          });
        }
        assert.equal(res.statusCode, 200);
        assert.match(String(res.headers['content-type']), /text\/html/);
        assert.match(res.body, /<html/i);
      });

      it('an unknown route is 404 route_not_found', async () => {
        const res = await t.inject({ method: 'GET', url: '/no/such/route?x=1' });
        assert.equal(res.statusCode, 404);
        assertErrorShape(res.json(), 'route_not_found');
        assert.match((res.json() as ErrorBody).error.message, /GET \/no\/such\/route$/);
      });

      it('an invalid JSON body is 400 in the error shape', async () => {
        const res = await t.inject({
          method: 'POST',
          url: '/api/auth/login',
          headers: { 'content-type': 'application/json' },
          payload: '{"email": "a@example.com", ',
        });
        assert.equal(res.statusCode, 400);
        assertErrorShape(res.json(), 'invalid_request');
      });

      it('a body over 1 MiB is 413 payload_too_large', async () => {
        const payload = JSON.stringify({ email: 'a@example.com', password: 'x'.repeat(1024 * 1024 + 10) });
        const res = await t.inject({
          method: 'POST',
          url: '/api/auth/login',
          headers: { 'content-type': 'application/json' },
          payload,
        });
        assert.equal(res.statusCode, 413);
        assertErrorShape(res.json(), 'payload_too_large');
      });
    });

    describe('readiness with an unmigrated database', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect, migrate: false });
      });
      after(async () => {
        await t?.close();
      });

      it('is 503 naming schema', async () => {
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(res.statusCode, 503);
        assert.equal(res.headers['retry-after'], '5');
        const body = res.json() as Readiness;
        assert.equal(body.status, 'not_ready');
        assert.deepEqual(body.failing, ['schema']);
        assert.equal(body.checks.database.status, 'ok');
        assert.match(
          body.checks.schema.detail ?? '',
          new RegExp(`empty.*${REQUIRED_SCHEMA_VERSION}.*migrate up`),
        );
      });

      it('liveness stays 200', async () => {
        const res = await t.inject({ method: 'GET', url: '/health/live' });
        assert.equal(res.statusCode, 200);
      });
    });

    describe('readiness after migrating down', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(async () => {
        await t?.close();
      });

      it('goes from 200 to 503 naming schema', async () => {
        assert.equal((await t.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200);
        assert.deepEqual(await migrateDown(t.database.db), [REQUIRED_SCHEMA_VERSION]);
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(res.statusCode, 503);
        const body = res.json() as Readiness;
        assert.deepEqual(body.failing, ['schema']);
        assert.equal(body.checks.schema.status, 'fail');
      });
    });

    describe('readiness when the database is gone', () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp({ dialect });
      });
      after(async () => {
        await t?.close();
      });

      // A hang fails at this bound; how fast is not asserted (a loaded machine is slow for reasons of its own).
      it('is 503 naming database, with Retry-After', { timeout: 30_000 }, async () => {
        assert.equal((await t.inject({ method: 'GET', url: '/health/ready' })).statusCode, 200);
        if (dialect === 'sqlite') {
          await t.database.close();
        } else if (dialect === 'mysql') {
          await t.testDb.drop();
        } else {
          const name = new URL(t.testDb.url).pathname.slice(1);
          await dropPostgresDatabase(name);
        }
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(res.statusCode, 503);
        assert.equal(res.headers['retry-after'], '5');
        const body = res.json() as Readiness;
        assert.equal(body.status, 'not_ready');
        assert.ok(body.failing.includes('database'), `failing: ${body.failing.join(', ')}`);
        assert.equal(body.checks.database.status, 'fail');
        assert.ok(body.checks.database.detail);
        // The process itself is still alive.
        assert.equal((await t.inject({ method: 'GET', url: '/health/live' })).statusCode, 200);
        assert.equal((await t.inject({ method: 'GET', url: '/health' })).statusCode, 200);
      });
    });
  });
}

describe('redis', () => {
  describe('reachable', { skip: process.env.TEST_REDIS_URL ? false : 'TEST_REDIS_URL not set' }, () => {
    let t: TestApp;
    before(async () => {
      markSuiteRan('redis');
      t = await startTestApp({ env: { REDIS_URL: process.env.TEST_REDIS_URL! } });
    });
    after(async () => {
      await t?.close();
    });

    it('readiness shows redis ok', async () => {
      // The client connects in the background; give it a moment.
      let body: Readiness | undefined;
      let status = 0;
      for (let i = 0; i < 50; i++) {
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        status = res.statusCode;
        body = res.json() as Readiness;
        if (status === 200) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body?.status, 'ready');
      assert.equal(body?.checks.redis.status, 'ok');
    });
  });

  describe('unreachable', () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp({ env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    });
    after(async () => {
      await t?.close();
    });

    // A hang fails at this bound; how fast is not asserted (a loaded machine is slow for reasons of its own).
    it('readiness is 503 naming redis, without waiting for Redis', { timeout: 30_000 }, async () => {
      for (const delay of [0, 500]) {
        await new Promise((r) => setTimeout(r, delay));
        const res = await t.inject({ method: 'GET', url: '/health/ready' });
        assert.equal(res.statusCode, 503);
        assert.equal(res.headers['retry-after'], '5');
        const body = res.json() as Readiness;
        assert.deepEqual(body.failing, ['redis']);
        assert.equal(body.checks.redis.status, 'fail');
        assert.equal(body.checks.database.status, 'ok');
      }
    });

    it('liveness and /health are unaffected', async () => {
      assert.equal((await t.inject({ method: 'GET', url: '/health/live' })).statusCode, 200);
      assert.equal((await t.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    });
  });
});
