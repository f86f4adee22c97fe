import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertError, bearer, createUser, startTestApp, type TestApp } from '../helpers/app.js';
import {
  createTestDatabase,
  dropPostgresDatabase,
  postgresAvailable,
  type TestDatabase,
} from '../helpers/databases.js';
import { freePort } from '../helpers/net.js';

/**
 * The database itself is gone (issue 19, item 9): dropped while the server runs (SQLSTATE 3D000 on every new
 * connection), or its Unix socket missing (`connect ENOENT`). Clients get 503 `database_unavailable` with
 * Retry-After, never a 500, and readiness names the database instead of reporting an "empty schema".
 */
interface Readiness {
  failing: string[];
  checks: Record<string, { status: string; detail?: string }>;
}

async function assertDatabaseUnavailable(t: TestApp, apiKey: string, accessToken: string) {
  const requests = [
    {
      method: 'POST' as const,
      url: '/api/auth/login',
      payload: { email: 'gone@example.com', password: 'a-long-enough-password' },
    },
    { method: 'GET' as const, url: '/api/conversations', headers: bearer(accessToken) },
    {
      method: 'POST' as const,
      url: '/v1/chat/completions',
      headers: bearer(apiKey),
      payload: { model: 'demo', messages: [{ role: 'user', content: 'hi' }] },
    },
  ];
  for (const request of requests) {
    const res = await t.inject(request);
    assertError(res, 503, 'database_unavailable');
    assert.ok(Number(res.headers['retry-after']) > 0, `${request.url}: Retry-After`);
  }
  const ready = await t.inject({ method: 'GET', url: '/health/ready' });
  assert.equal(ready.statusCode, 503);
  const report = ready.json() as Readiness;
  assert.ok(report.failing.includes('database'), ready.body);
  assert.doesNotMatch(report.checks.schema?.detail ?? '', /empty|older than/, ready.body);
  return report;
}

describe('PostgreSQL database gone', { skip: !postgresAvailable() && 'TEST_DATABASE_URL not set' }, () => {
  it('dropped mid-run (3D000): 503 database_unavailable on login, conversations and /v1; readiness names it', async () => {
    const testDb = await createTestDatabase('postgres');
    const t = await startTestApp({ testDb, env: { DEMO_WORD_DELAY_MS: '0' } });
    try {
      const user = await createUser(t, 'gone@example.com');
      const key = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'k' },
      });
      assert.equal(key.statusCode, 201, key.body);
      const apiKey = (key.json() as { key: string }).key;
      assert.equal(
        (await t.inject({ method: 'GET', url: '/api/conversations', headers: bearer(user.accessToken) }))
          .statusCode,
        200,
      );

      await dropPostgresDatabase(new URL(testDb.url).pathname.slice(1));

      const report = await assertDatabaseUnavailable(t, apiKey, user.accessToken);
      assert.match(report.checks.database?.detail ?? '', /does not exist/);
    } finally {
      await t.close();
      await testDb.drop();
    }
  });

  // The same database reached where no server answers: its Unix socket directory empty (connect ENOENT), a
  // closed port on 127.0.0.1 (ECONNREFUSED), and on `localhost` (one refusal per address: an AggregateError).
  const unreachable = (name: string, port: number) => [
    {
      what: 'Unix socket missing',
      url: `postgres://postgres@/${name}?host=/nonexistent-colloquy-socket-dir`,
    },
    { what: 'refused', url: `postgres://postgres@127.0.0.1:${port}/${name}` },
    { what: 'refused on every address of localhost', url: `postgres://postgres@localhost:${port}/${name}` },
  ];

  it('unreachable (socket missing, connection refused): 503 database_unavailable, not 500', async () => {
    const testDb = await createTestDatabase('postgres');
    const t = await startTestApp({ testDb, env: { DEMO_WORD_DELAY_MS: '0' } });
    const name = new URL(testDb.url).pathname.slice(1);
    try {
      const user = await createUser(t, 'gone@example.com');
      const key = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'k' },
      });
      const apiKey = (key.json() as { key: string }).key;
      for (const { what, url } of unreachable(name, await freePort())) {
        const gone: TestDatabase = { dialect: 'postgres', url, drop: async () => {} };
        const broken = await startTestApp({ testDb: gone, migrate: false, env: { DEMO_WORD_DELAY_MS: '0' } });
        try {
          const report = await assertDatabaseUnavailable(broken, apiKey, user.accessToken);
          assert.match(report.checks.database?.detail ?? '', /ENOENT|ECONNREFUSED/, what);
        } finally {
          await broken.close();
        }
      }
    } finally {
      await t.close();
      await testDb.drop();
    }
  });
});
