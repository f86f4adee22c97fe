// The API behind the console's Providers page and usage breakdowns, on SQLite and (with TEST_DATABASE_URL)
// PostgreSQL: admin-only provider health that follows real upstream faults, usage by model, key and user
// with names, cache hits, and limit refusals counted durably and scoped to the user who asks.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { RouteHealth } from '../../src/providers/router/deployment-health.js';
import { bearer, createUser, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, defaultRouting, eventually, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

interface Providers {
  replica: string;
  window_seconds: number;
  routes: RouteHealth[];
}
interface UsageRow {
  key: string | null;
  label?: string | null;
  requests: number;
  cached_requests: number;
  rate_limited?: number;
  budget_exceeded?: number;
}

for (const dialect of DIALECTS) {
  describe(`console admin API (${dialect})`, () => {
    let s: ChatStack;
    let other: Awaited<ReturnType<typeof createUser>>;
    let otherKey: { id: string; key: string };

    before(async () => {
      s = await startChatStack({
        dialect,
        env: { RATE_LIMIT_ENABLED: 'true', RESPONSE_CACHE_TTL_SECONDS: '60', UPSTREAM_RETRIES: '2' },
        routing: (backupUrl) => ({
          ...defaultRouting(backupUrl),
          // Two consecutive failures open a deployment's circuit, for a minute.
          router: {
            backoff: { initial_ms: 10, max_ms: 50 },
            circuit_breaker: { failures: 2, cooldown_ms: 60_000 },
          },
        }),
      });
      other = await createUser(s.t, 'other-user@example.com');
      const created = await s.t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(other.accessToken),
        payload: { name: 'other key' },
      });
      assert.equal(created.statusCode, 201, created.body);
      otherKey = created.json();
    });
    after(() => s?.close());

    const chat = (key: string, body: Record<string, unknown> = {}) =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(key), 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'ha-model',
          messages: [{ role: 'user', content: `hello ${Math.random()}` }],
          ...body,
        }),
      });
    const providers = async () => {
      const res = await s.t.inject({ url: '/api/admin/providers', headers: bearer(TEST_MASTER_KEY) });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as Providers;
    };
    const deployment = (p: Providers, id: string) =>
      p.routes.find((r) => r.name === 'ha-model')!.deployments.find((d) => d.id === id)!;
    const usage = async (token: string, query: string) => {
      const res = await s.t.inject({ url: `/api/usage?${query}`, headers: bearer(token) });
      assert.equal(res.statusCode, 200, res.body);
      return (res.json() as { data: UsageRow[] }).data;
    };

    it('refuses the providers view without credentials (401) and to a plain user (403)', async () => {
      assert.equal((await s.t.inject({ url: '/api/admin/providers' })).statusCode, 401);
      for (const token of [s.apiKey, other.accessToken]) {
        const res = await s.t.inject({ url: '/api/admin/providers', headers: bearer(token) });
        assert.equal(res.statusCode, 403);
        assert.equal(res.json().error.code, 'forbidden');
      }
    });

    it('lists the configured route with healthy deployments before any traffic', async () => {
      const p = await providers();
      assert.equal(p.window_seconds, 300);
      assert.match(p.replica, /:\d+$/);
      const route = p.routes.find((r) => r.name === 'ha-model');
      assert.ok(route, JSON.stringify(p.routes));
      assert.equal(route.kind, 'alias');
      assert.deepEqual(
        route.deployments.map((d) => [d.id, d.provider, d.state, d.attempts, d.error_ratio]),
        [
          ['openai/gpt-4o-mini', 'openai', 'closed', 0, null],
          ['backup/gpt-4o-mini', 'backup', 'closed', 0, null],
        ],
      );
    });

    it('reports attempts, latency and time to first token, then an open circuit after upstream faults', async () => {
      for (let i = 0; i < 3; i++) assert.equal((await chat(s.apiKey)).status, 200);
      const streamed = await chat(s.apiKey, { stream: true });
      assert.equal(streamed.status, 200);
      await streamed.text();
      let primary = deployment(await providers(), 'openai/gpt-4o-mini');
      assert.equal(primary.state, 'closed');
      assert.equal(primary.attempts, 4);
      assert.equal(primary.error_ratio, 0);
      assert.ok(primary.p50_latency_ms !== null && primary.p50_latency_ms >= 0);
      assert.ok(primary.p95_latency_ms! >= primary.p50_latency_ms!);
      assert.ok(primary.p50_ttft_ms !== null, 'the stream gave a time to first token');

      // Two failures in a row: each request falls back to the backup, and the primary's circuit opens.
      s.fake.queue({ kind: 'status', status: 500 }, { kind: 'status', status: 500 });
      for (let i = 0; i < 2; i++) assert.equal((await chat(s.apiKey)).status, 200);
      const after = await providers();
      primary = deployment(after, 'openai/gpt-4o-mini');
      assert.equal(primary.state, 'open');
      assert.equal(primary.failures, 2);
      assert.equal(primary.error_ratio, 2 / 6);
      const backup = deployment(after, 'backup/gpt-4o-mini');
      assert.equal(backup.state, 'closed');
      assert.equal(backup.attempts, 2);
      assert.equal(backup.error_ratio, 0);
    });

    it('breaks usage down by model, key and user with names, scoped to the user who asks', async () => {
      assert.equal((await chat(otherKey.key)).status, 200);
      // Ledger rows are written just after each answer: wait for this one and the previous test's six.
      await eventually(
        async () => {
          const rows = await usage(TEST_MASTER_KEY, 'group_by=user');
          return rows.length === 2 && rows.find((r) => r.key === s.userId)?.requests === 6;
        },
        5_000,
        'the requests to be recorded',
      );
      const mine = await usage(s.apiKey, 'group_by=api_key');
      assert.deepEqual(
        mine.map((r) => r.key),
        [s.apiKeyId],
        'a user sees only their own keys',
      );
      assert.match(mine[0]!.label!, /^chat tests \(.+…\)$/);
      assert.equal(mine[0]!.requests, 6);
      const users = await usage(s.apiKey, 'group_by=user');
      assert.deepEqual(
        users.map((r) => [r.key, r.label]),
        [[s.userId, 'chat-user@example.com']],
      );
      const forbidden = await s.t.inject({
        url: `/api/usage?group_by=user&user_id=${other.id}`,
        headers: bearer(s.apiKey),
      });
      assert.equal(forbidden.statusCode, 403);

      const everyone = await usage(TEST_MASTER_KEY, 'group_by=user');
      assert.deepEqual(
        everyone.map((r) => r.label).sort(),
        ['chat-user@example.com', 'other-user@example.com'],
        'an admin sees everyone, by email',
      );
      const models = await usage(TEST_MASTER_KEY, 'group_by=model');
      assert.deepEqual(
        models.map((r) => r.key),
        ['ha-model'],
      );
      assert.equal(models[0]!.rate_limited, undefined, 'refusals have no model');
    });

    it('counts a repeated deterministic request as a cache hit', async () => {
      const body = { temperature: 0, messages: [{ role: 'user', content: 'cache me please' }] };
      const today = async () => (await usage(other.accessToken, 'group_by=day')).at(-1)!;
      const before = await today();
      assert.equal((await chat(otherKey.key, body)).status, 200);
      const repeat = await chat(otherKey.key, body);
      assert.equal(repeat.status, 200);
      assert.equal(repeat.headers.get('x-cache'), 'hit');
      await eventually(
        async () => {
          const now = await today();
          return now.requests === before.requests + 2 && now.cached_requests === before.cached_requests + 1;
        },
        5_000,
        'the miss and the hit to be recorded',
      );
    });

    it('counts rate-limit and budget refusals per day, key and user, for the user and for admins', async () => {
      const limit = await s.t.inject({
        method: 'PUT',
        url: `/api/limits/key/${otherKey.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { limit: 'requests_per_minute', value: 0 },
      });
      assert.equal(limit.statusCode, 204, limit.body);
      for (let i = 0; i < 2; i++) {
        const refused = await chat(otherKey.key);
        assert.equal(refused.status, 429);
        assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'rate_limited');
      }
      const budget = await s.t.inject({
        method: 'PUT',
        url: `/api/budgets/user/${s.userId}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { period: 'day', limit_usd: null, limit_tokens: 1 },
      });
      assert.equal(budget.statusCode, 204, budget.body);
      const overBudget = await chat(s.apiKey);
      assert.equal(overBudget.status, 429);
      assert.equal(((await overBudget.json()) as { error: { code: string } }).error.code, 'budget_exceeded');

      // Counts are written in batches (every few seconds), never on the request itself.
      const todayOf = async (token: string) => (await usage(token, 'group_by=day')).at(-1)!;
      await eventually(
        async () => (await todayOf(other.accessToken)).rate_limited === 2,
        15_000,
        'the rate-limit refusals to be recorded',
      );
      const otherToday = await todayOf(other.accessToken);
      assert.equal(otherToday.budget_exceeded, 0, 'a user sees only their own refusals');
      await eventually(
        async () => (await todayOf(s.apiKey)).budget_exceeded === 1,
        15_000,
        'the budget refusal to be recorded',
      );
      assert.equal((await todayOf(s.apiKey)).rate_limited, 0);
      const all = await todayOf(TEST_MASTER_KEY);
      assert.equal(all.rate_limited, 2);
      assert.equal(all.budget_exceeded, 1);
      const byKey = await usage(TEST_MASTER_KEY, 'group_by=api_key');
      const refusedKey = byKey.find((r) => r.key === otherKey.id)!;
      assert.equal(refusedKey.rate_limited, 2);
      assert.match(refusedKey.label!, /^other key \(/);
      const { rows } = await sql<{
        n: number | string;
      }>`select count(*) as n from limit_rejections_daily`.execute(s.t.database.db);
      assert.equal(Number(rows[0]!.n), 2, 'one durable row per (day, user, key, reason)');
    });
  });
}
