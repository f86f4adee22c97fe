import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import type { Kysely } from 'kysely';
import pino from 'pino';
import {
  createTestDatabase,
  DIALECTS,
  markSuiteRan,
  type TestDatabase,
  type TestDialect,
} from '../../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import { createRedis } from '../../core/redis.js';
import { type DatabaseHandle, type Db, openDatabase } from '../../db/database.js';
import * as limitsMigration from '../../db/migrations/0003-limits.js';
import { migrateUp } from '../../db/migrator.js';
import { createMetrics } from '../../metrics/registry.js';
import type { Principal } from '../auth/principal.js';
import { PriceTable } from '../usage/prices.js';
import { BudgetStore } from './budget-store.js';
import {
  BudgetService,
  type BudgetServiceOptions,
  budgetWindow,
  DEFAULT_WORST_CASE_OUTPUT_TOKENS,
  worstCaseCost,
} from './budgets.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const logger = pino({ level: 'silent' });
/** Warnings the services log (a failed settle is logged, never thrown): the suites assert there are none. */
const warnings: string[] = [];
const watchedLogger = pino(
  { level: 'warn' },
  { write: (line: string) => warnings.push(JSON.parse(line).msg as string) },
);
const uid = (label: string) => `${label}_${randomBytes(5).toString('hex')}`;

async function openTestDatabase(dialect: TestDialect) {
  const testDb: TestDatabase = await createTestDatabase(dialect);
  const database: DatabaseHandle = openDatabase({
    ...parseDatabaseUrl(testDb.url),
    poolSize: 8,
    poolTimeoutMs: 5_000,
    busyTimeoutMs: 5_000,
  });
  await migrateUp(database.db);
  const tables = await database.db.introspection.getTables();
  if (!tables.some((t) => t.name === 'budgets'))
    await limitsMigration.up(database.db as unknown as Kysely<unknown>);
  return {
    db: database.db,
    close: async () => {
      await database.close().catch(() => {});
      await testDb.drop();
    },
  };
}

/** A user with one API key, as rows the usage ledger can reference. */
async function seedPrincipal(db: Db, userId = uid('usr')): Promise<Principal> {
  const now = new Date().toISOString();
  const exists = await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
  if (!exists)
    await db
      .insertInto('users')
      .values({
        id: userId,
        email: `${userId}@example.com`,
        password_hash: 'x',
        role: 'user',
        display_name: null,
        disabled_at: null,
        created_at: now,
        updated_at: now,
      })
      .execute();
  const keyId = uid('key');
  await db
    .insertInto('api_keys')
    .values({
      id: keyId,
      user_id: userId,
      name: 'test',
      prefix: 'ck_test',
      key_hash: uid('hash'),
      expires_at: null,
      last_used_at: null,
      revoked_at: null,
      created_at: now,
    })
    .execute();
  return { userId, apiKeyId: keyId, role: 'user', via: 'api_key' };
}

async function ledger(db: Db, p: Principal, createdAt: string, costUsd: number, tokens = [100, 50]) {
  await db
    .insertInto('usage_records')
    .values({
      id: newId('use'),
      request_id: uid('req'),
      user_id: p.userId,
      api_key_id: p.apiKeyId,
      model: 'gpt-4o-mini',
      provider: 'openai',
      deployment: 'openai',
      prompt_tokens: tokens[0]!,
      completion_tokens: tokens[1]!,
      cost_usd: costUsd,
      latency_ms: 10,
      ttft_ms: null,
      status: 'ok',
      cached: 0,
      retries: 0,
      fallback: 0,
      created_at: createdAt,
    })
    .execute();
}

async function refusal(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AppError, `expected an AppError, got ${err}`);
    return err;
  }
  assert.fail('expected a refusal');
}

const MASTER: Principal = { userId: null, apiKeyId: null, role: 'admin', via: 'master_key' };

/** A clock the test moves by hand. */
function manualClock(iso: string) {
  let now = new Date(iso);
  return {
    now: () => now,
    set: (next: string) => {
      now = new Date(next);
    },
    advance: (ms: number) => {
      now = new Date(now.getTime() + ms);
    },
  };
}

async function redisReady(redis: Redis) {
  if (redis.status === 'ready') return;
  await once(redis, 'ready', { signal: AbortSignal.timeout(5_000) });
}

async function deleteKeys(redis: Redis, prefix: string) {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
}

const near = (actual: number, expected: number, what = 'value') =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: expected ${expected}, got ${actual}`);

describe('worst-case cost', () => {
  it('prices the prompt plus the largest allowed output', () => {
    const prices = new PriceTable();
    const wc = worstCaseCost(prices, { model: 'gpt-4o-mini', promptTokens: 1000, maxOutputTokens: 500 });
    near(wc.usd, (1000 * 0.15 + 500 * 0.6) / 1e6, 'usd');
    assert.equal(wc.tokens, 1500);
    const fallback = worstCaseCost(prices, { model: 'gpt-4o', promptTokens: 10, maxOutputTokens: null });
    assert.equal(fallback.tokens, 10 + DEFAULT_WORST_CASE_OUTPUT_TOKENS);
    assert.equal(worstCaseCost(prices, { model: 'unknown-model', promptTokens: 10 }).usd, 0);
  });

  it('TIMEZONE windows: local midnights, a daylight-saving day of 23 hours, a month in Shanghai', () => {
    // America/New_York springs forward on 2031-03-09: the day runs from 05:00 UTC to 04:00 UTC, 23 hours.
    const spring = budgetWindow('day', new Date('2031-03-09T12:00:00Z'), 'America/New_York');
    assert.deepEqual(spring, {
      period: 'day',
      id: '2031-03-09',
      start: '2031-03-09T05:00:00.000Z',
      end: '2031-03-10T04:00:00.000Z',
      timeZone: 'America/New_York',
    });
    assert.equal(Date.parse(spring.end) - Date.parse(spring.start), 23 * 3600_000);
    // 03:30 UTC on Mar 10 is still 23:30 on Mar 9 in New York.
    assert.equal(budgetWindow('day', new Date('2031-03-10T03:30:00Z'), 'America/New_York').id, '2031-03-09');
    const fall = budgetWindow('day', new Date('2031-11-02T12:00:00Z'), 'America/New_York');
    assert.equal(Date.parse(fall.end) - Date.parse(fall.start), 25 * 3600_000);
    // 20:00 UTC on Jan 31 is already February 1 in Shanghai.
    assert.deepEqual(budgetWindow('month', new Date('2031-01-31T20:00:00Z'), 'Asia/Shanghai'), {
      period: 'month',
      id: '2031-02',
      start: '2031-01-31T16:00:00.000Z',
      end: '2031-02-28T16:00:00.000Z',
      timeZone: 'Asia/Shanghai',
    });
  });

  it('windows are UTC days and months', () => {
    const at = new Date('2031-02-28T23:59:59.999Z');
    assert.deepEqual(budgetWindow('day', at), {
      period: 'day',
      id: '2031-02-28',
      start: '2031-02-28T00:00:00.000Z',
      end: '2031-03-01T00:00:00.000Z',
    });
    assert.deepEqual(budgetWindow('month', at), {
      period: 'month',
      id: '2031-02',
      start: '2031-02-01T00:00:00.000Z',
      end: '2031-03-01T00:00:00.000Z',
    });
    assert.equal(budgetWindow('month', new Date('2031-12-05T00:00:00Z')).end, '2032-01-01T00:00:00.000Z');
  });
});

/**
 * The behaviour every backend shares: run on the in-process counters and, with TEST_REDIS_URL, on Redis.
 * `make` builds a service on the shared database (two calls → two replicas when on Redis).
 */
function budgetBehaviour(
  label: string,
  setup: () => Promise<{
    make: (extra?: Partial<BudgetServiceOptions>) => BudgetService;
    db: Db;
    close: () => Promise<void>;
    /** Forgets the fast counters (a Redis restart); undefined when not applicable. */
    forget?: () => Promise<void>;
  }>,
  options: { skip?: string | false; replicas: boolean },
) {
  describe(label, { skip: options.skip ?? false }, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    before(async () => {
      env = await setup();
    });
    after(async () => env?.close());

    it('a budget set starts from the ledger, and a request admitted before it is charged when it ends', async () => {
      // Issue 19, item 2: requests admitted while no budget was known (in flight, or on a replica that had
      // not heard of it) were in the ledger but never in the budget's spend.
      const clock = manualClock('2031-01-15T10:00:00Z');
      const budgets = env.make({ now: clock.now });
      const p = await seedPrincipal(env.db);
      await ledger(env.db, p, '2031-01-15T09:00:00.000Z', 0.2, [100, 50]);
      const before = await budgets.reserve({
        principal: p,
        requestId: 'r0',
        worstCaseUsd: 1,
        worstCaseTokens: 1,
      });
      assert.equal(before.budgets.length, 0);
      await budgets.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 10,
        limitTokens: null,
      });
      let [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.spentUsd, 0.2, 'spent from the ledger');
      assert.equal(status!.spentTokens, 150);
      await budgets.settle(before, 0.05, 30);
      await budgets.settle(before, 0.05, 30); // ignored
      [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.spentUsd, 0.25, 'the request in flight is charged');
      assert.equal(status!.spentTokens, 180);
      // Nothing changed while this one ran: nothing more to charge than its reservation's settle.
      const after = await budgets.reserve({
        principal: p,
        requestId: 'r1',
        worstCaseUsd: 1,
        worstCaseTokens: 1,
      });
      await budgets.settle(after, 0.01, 10);
      [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      assert.equal(status!.spentTokens, 190);
    });

    it('with TIMEZONE=Asia/Shanghai a daily budget resets at Shanghai midnight (16:00 UTC), not UTC midnight', async () => {
      // 23:00 in Shanghai on Jan 15: 900 of the day's 1000 tokens are spent.
      const clock = manualClock('2031-01-15T15:00:00Z');
      const shanghai = env.make({ now: clock.now, timeZone: 'Asia/Shanghai' });
      const utc = env.make({ now: clock.now });
      const p = await seedPrincipal(env.db);
      // 01:00 UTC on Jan 15 is 09:00 in Shanghai, the same local day; 15:30 UTC on Jan 14 is its day before.
      await ledger(env.db, p, '2031-01-15T01:00:00.000Z', 0, [600, 300]);
      await ledger(env.db, p, '2031-01-14T15:30:00.000Z', 0, [5000, 0]);
      await shanghai.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: null,
        limitTokens: 1000,
      });
      const ask = (service: BudgetService, requestId: string) =>
        service.reserve({ principal: p, requestId, worstCaseUsd: 0, worstCaseTokens: 200 });
      let [status] = await shanghai.status({ scope: 'key', subjectId: p.apiKeyId! });
      assert.equal(status!.spentTokens, 900, 'the local day holds the 09:00 request, not the day before');
      assert.equal(status!.window.start, '2031-01-14T16:00:00.000Z');
      assert.equal(status!.window.end, '2031-01-15T16:00:00.000Z');
      const refused = await refusal(ask(shanghai, 'late'));
      assert.equal(refused.code, 'budget_exceeded');
      assert.match(refused.message, /resets at 2031-01-15T16:00:00.000Z/);

      // 00:30 in Shanghai on Jan 16, still Jan 15 in UTC: a new day there.
      clock.set('2031-01-15T16:30:00Z');
      [status] = await shanghai.status({ scope: 'key', subjectId: p.apiKeyId! });
      assert.equal(status!.window.id, '2031-01-16');
      assert.equal(status!.spentTokens, 0);
      await shanghai.release(await ask(shanghai, 'after-midnight'));
      // The same budget counted in UTC days is still on Jan 15 (the 5000 tokens of 15:30 UTC on Jan 14 are
      // outside it, the 900 inside): refused.
      assert.equal((await refusal(ask(utc, 'utc'))).code, 'budget_exceeded');
    });

    it('a request whose worst case is over the whole budget is told that waiting will not help', async () => {
      const budgets = env.make();
      const p = await seedPrincipal(env.db);
      await budgets.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: null,
        limitTokens: 2000,
      });
      const request = { principal: p, requestId: 'big', worstCaseUsd: 0, worstCaseTokens: 4096 + 8 };
      const err = await budgets.reserve(request).then(
        () => assert.fail('expected a refusal'),
        (e: AppError) => e,
      );
      assert.equal(err.code, 'budget_exceeded');
      assert.match(err.message, /over the whole budget, even after it resets: set a lower max_tokens/);
      const fits = await budgets.reserve({ ...request, requestId: 'small', worstCaseTokens: 100 });
      assert.equal(fits.budgets.length, 1);
      await budgets.release(fits);
    });

    it('reserve, settle and release move the counters; finishing twice does nothing', async () => {
      const clock = manualClock('2031-01-15T10:00:00Z');
      const budgets = env.make({ now: clock.now });
      const p = await seedPrincipal(env.db);
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });

      const r1 = await budgets.reserve({
        principal: p,
        requestId: 'r1',
        worstCaseUsd: 0.4,
        worstCaseTokens: 1000,
      });
      assert.equal(r1.budgets.length, 1);
      let [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.reservedUsd, 0.4, 'reserved');
      assert.equal(status!.reservedTokens, 1000);
      near(status!.spentUsd, 0, 'spent');

      await budgets.settle(r1, 0.1, 300);
      await budgets.settle(r1, 5, 5000); // ignored
      [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.reservedUsd, 0, 'reserved after settle');
      near(status!.spentUsd, 0.1, 'spent after settle');
      assert.equal(status!.spentTokens, 300);

      const r2 = await budgets.reserve({
        principal: p,
        requestId: 'r2',
        worstCaseUsd: 0.5,
        worstCaseTokens: 10,
      });
      await budgets.release(r2);
      await budgets.release(r2);
      await budgets.settle(r2, 1, 1);
      [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.reservedUsd, 0, 'reserved after release');
      near(status!.spentUsd, 0.1, 'spent after release');
    });

    it('refuses before the provider is called, naming the budget and period', async () => {
      const metrics = createMetrics({ track: 'stable' });
      const clock = manualClock('2031-01-15T10:00:00Z');
      const budgets = env.make({ now: clock.now, metrics });
      const p = await seedPrincipal(env.db);
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      let providerCalls = 0;
      const handle = async (worstCaseUsd: number, actualUsd: number) => {
        const reservation = await budgets.reserve({
          principal: p,
          requestId: uid('req'),
          worstCaseUsd,
          worstCaseTokens: 100,
        });
        try {
          providerCalls++;
          await budgets.settle(reservation, actualUsd, 100);
        } catch (err) {
          await budgets.release(reservation);
          throw err;
        }
      };
      await handle(0.5, 0.45);
      await handle(0.5, 0.45);
      assert.equal(providerCalls, 2);
      const err = await refusal(handle(0.2, 0.2));
      assert.equal(providerCalls, 2, 'the provider was not called');
      assert.equal(err.status, 429);
      assert.equal(err.code, 'budget_exceeded');
      assert.equal(err.type, 'insufficient_quota');
      assert.match(err.message, /daily budget of \$1\.00 for this API key/);
      assert.match(err.message, /\$0\.90 spent/);
      assert.match(err.message, /resets at 2031-01-16T00:00:00\.000Z/);
      assert.equal(err.options.headers?.['x-should-retry'], 'false');
      assert.deepEqual(err.toBody().error.type, 'insufficient_quota');
      // What still fits is allowed.
      await handle(0.1, 0.1);
      const values = (await metrics.limitRejections.get()).values;
      assert.equal(values.find((v) => v.labels.limit === 'budget_day' && v.labels.scope === 'key')?.value, 1);
    });

    it('token budgets, and a user budget spans all of the user’s keys', async () => {
      const budgets = env.make({ now: manualClock('2031-01-15T10:00:00Z').now });
      const a = await seedPrincipal(env.db);
      const b = await seedPrincipal(env.db, a.userId!);
      await budgets.store.set({
        scope: 'user',
        subjectId: a.userId!,
        period: 'month',
        limitUsd: null,
        limitTokens: 1000,
      });
      const r = await budgets.reserve({
        principal: a,
        requestId: 'a1',
        worstCaseUsd: 0,
        worstCaseTokens: 600,
      });
      const err = await refusal(
        budgets.reserve({ principal: b, requestId: 'b1', worstCaseUsd: 0, worstCaseTokens: 600 }),
      );
      assert.match(err.message, /monthly budget of 1000 tokens for this user/);
      await budgets.settle(r, 0, 200);
      await budgets.reserve({ principal: b, requestId: 'b2', worstCaseUsd: 0, worstCaseTokens: 800 });
    });

    it('day and month windows roll over with the clock', async () => {
      const clock = manualClock('2031-01-30T10:00:00Z');
      const budgets = env.make({ now: clock.now });
      const p = await seedPrincipal(env.db);
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'month',
        limitUsd: 2.5,
        limitTokens: null,
      });
      const spend = async (usd: number) => {
        const r = await budgets.reserve({
          principal: p,
          requestId: uid('req'),
          worstCaseUsd: usd,
          worstCaseTokens: 1,
        });
        await budgets.settle(r, usd, 1);
      };
      await spend(0.9);
      assert.match((await refusal(spend(0.2))).message, /daily budget of \$1\.00/);
      clock.set('2031-01-31T00:00:01Z'); // a new day, the same month
      await spend(0.9);
      await spend(0.1);
      clock.advance(20 * 3600_000);
      assert.match((await refusal(spend(0.2))).message, /daily budget/);
      clock.set('2031-01-31T23:59:59Z');
      assert.match((await refusal(spend(0.01))).message, /daily/);
      const status = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status.find((s) => s.period === 'month')!.spentUsd, 1.9, 'month spent');
      // A new day on the 31st is still January, whose budget then runs out before the day's does.
      clock.set('2031-01-31T23:59:59Z');
      clock.set('2031-02-01T00:00:00Z');
      await spend(0.9);
      const feb = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(feb.find((s) => s.period === 'month')!.spentUsd, 0.9, 'february spent');
      assert.equal(feb.find((s) => s.period === 'month')!.window.id, '2031-02');
    });

    it('the month budget refuses across days', async () => {
      const clock = manualClock('2031-03-01T08:00:00Z');
      const budgets = env.make({ now: clock.now });
      const p = await seedPrincipal(env.db);
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'month',
        limitUsd: 2.5,
        limitTokens: null,
      });
      for (const day of ['2031-03-01', '2031-03-02']) {
        clock.set(`${day}T12:00:00Z`);
        const r = await budgets.reserve({
          principal: p,
          requestId: uid('req'),
          worstCaseUsd: 0.9,
          worstCaseTokens: 1,
        });
        await budgets.settle(r, 0.9, 1);
      }
      clock.set('2031-03-03T12:00:00Z');
      const err = await refusal(
        budgets.reserve({ principal: p, requestId: 'x', worstCaseUsd: 0.8, worstCaseTokens: 1 }),
      );
      assert.match(err.message, /monthly budget of \$2\.50 for this API key/);
      assert.match(err.message, /resets at 2031-04-01T00:00:00\.000Z/);
      await budgets.reserve({ principal: p, requestId: 'y', worstCaseUsd: 0.7, worstCaseTokens: 1 });
      clock.set('2031-04-01T00:00:00Z');
      await budgets.reserve({ principal: p, requestId: 'z', worstCaseUsd: 0.95, worstCaseTokens: 1 });
    });

    it('an abandoned reservation expires on its own', async () => {
      const clock = manualClock('2031-05-10T10:00:00Z');
      const budgets = env.make({ now: clock.now, reservationTtlMs: 60_000 });
      const p = await seedPrincipal(env.db);
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      await budgets.reserve({ principal: p, requestId: 'crashed', worstCaseUsd: 0.9, worstCaseTokens: 1 });
      await refusal(
        budgets.reserve({ principal: p, requestId: 'next', worstCaseUsd: 0.2, worstCaseTokens: 1 }),
      );
      clock.advance(61_000);
      await budgets.reserve({ principal: p, requestId: 'later', worstCaseUsd: 0.2, worstCaseTokens: 1 });
      const [status] = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      near(status!.reservedUsd, 0.2, 'only the live reservation');
    });

    it('the master key and subjects without budgets are not limited', async () => {
      const budgets = env.make();
      const r = await budgets.reserve({
        principal: MASTER,
        requestId: 'm',
        worstCaseUsd: 1e6,
        worstCaseTokens: 1e9,
      });
      assert.deepEqual(r.budgets, []);
      await budgets.settle(r, 1e6, 1e9);
      const p = await seedPrincipal(env.db);
      const free = await budgets.reserve({
        principal: p,
        requestId: 'f',
        worstCaseUsd: 1e6,
        worstCaseTokens: 1e9,
      });
      assert.deepEqual(free.budgets, []);
    });

    it('50 concurrent $0.30 reservations against $10: at most 33 succeed, never more than $10 reserved', async () => {
      const replicas = options.replicas ? [env.make(), env.make()] : [env.make()];
      const p = await seedPrincipal(env.db);
      await replicas[0]!.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 10,
        limitTokens: null,
      });
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          replicas[i % replicas.length]!.reserve({
            principal: p,
            requestId: `burst-${i}`,
            worstCaseUsd: 0.3,
            worstCaseTokens: 10,
          }),
        ),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      for (const r of results) {
        if (r.status === 'rejected')
          assert.equal((r.reason as AppError).code, 'budget_exceeded', String(r.reason));
      }
      assert.ok(ok <= 33, `${ok} reservations succeeded`);
      assert.equal(ok, 33, 'every reservation that fits succeeds');
      for (const service of replicas) {
        const [status] = await service.status({ scope: 'key', subjectId: p.apiKeyId! });
        assert.ok(status!.reservedUsd <= 10, `reserved ${status!.reservedUsd}`);
        near(status!.reservedUsd, 9.9, 'reserved');
      }
    });

    it('rebuilds missing counters from the ledger instead of assuming nothing was spent', async () => {
      const clock = manualClock('2031-06-15T12:00:00Z');
      const p = await seedPrincipal(env.db);
      await ledger(env.db, p, '2031-06-15T01:00:00.000Z', 0.5);
      await ledger(env.db, p, '2031-06-15T11:59:00.000Z', 0.25);
      await ledger(env.db, p, '2031-06-14T23:00:00.000Z', 1);
      const first = env.make({ now: clock.now });
      await first.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      // A fresh counter starts from the ledger's $0.75 today.
      await refusal(first.reserve({ principal: p, requestId: 'a', worstCaseUsd: 0.3, worstCaseTokens: 1 }));
      const ok = await first.reserve({
        principal: p,
        requestId: 'b',
        worstCaseUsd: 0.25,
        worstCaseTokens: 1,
      });
      await first.settle(ok, 0.2, 1);
      await ledger(env.db, p, '2031-06-15T12:00:00.000Z', 0.2);
      if (env.forget) {
        await env.forget(); // Redis lost everything
        const [status] = await first.status({ scope: 'key', subjectId: p.apiKeyId! });
        near(status!.spentUsd, 0.95, 'rebuilt from the ledger');
      }
      // Another process (or a restarted one) starts from the ledger too.
      const second = env.make({ now: clock.now });
      await refusal(second.reserve({ principal: p, requestId: 'c', worstCaseUsd: 0.1, worstCaseTokens: 1 }));
      await second.reserve({ principal: p, requestId: 'd', worstCaseUsd: 0.05, worstCaseTokens: 1 });
    });

    it('logged no warnings (every settle and release succeeded)', () => {
      assert.deepEqual(warnings, []);
    });
  });
}

budgetBehaviour(
  'budgets (in process)',
  async () => {
    const { db, close } = await openTestDatabase('sqlite');
    const store = new BudgetStore(db);
    return {
      db,
      close,
      make: (extra = {}) => new BudgetService({ db, store, logger: watchedLogger, ...extra }),
    };
  },
  { replicas: false },
);

budgetBehaviour(
  'budgets (Redis)',
  async () => {
    markSuiteRan('redis');
    const { db, close } = await openTestDatabase('sqlite');
    const redis = createRedis(REDIS_URL!, logger);
    await redisReady(redis);
    const prefix = uid('colloquy-test:budget');
    return {
      db,
      make: (extra = {}) =>
        new BudgetService({ db, redis, keyPrefix: prefix, logger: watchedLogger, ...extra }),
      forget: () => deleteKeys(redis, prefix),
      close: async () => {
        await deleteKeys(redis, prefix).catch(() => {});
        redis.disconnect();
        await close();
      },
    };
  },
  { skip: REDIS_URL ? false : 'set TEST_REDIS_URL to run', replicas: false },
);

budgetBehaviour(
  'budgets (two replicas sharing Redis)',
  async () => {
    markSuiteRan('redis');
    const { db, close } = await openTestDatabase('sqlite');
    // Each replica has its own connection and its own budget cache, as separate processes would.
    const clients = [createRedis(REDIS_URL!, logger), createRedis(REDIS_URL!, logger)];
    await Promise.all(clients.map(redisReady));
    const prefix = uid('colloquy-test:budget');
    let next = 0;
    return {
      db,
      make: (extra = {}) =>
        new BudgetService({
          db,
          redis: clients[next++ % 2],
          keyPrefix: prefix,
          logger: watchedLogger,
          ...extra,
        }),
      forget: () => deleteKeys(clients[0]!, prefix),
      close: async () => {
        await deleteKeys(clients[0]!, prefix).catch(() => {});
        for (const c of clients) c.disconnect();
        await close();
      },
    };
  },
  { skip: REDIS_URL ? false : 'set TEST_REDIS_URL to run', replicas: true },
);

describe('budgets with Redis unreachable', () => {
  let env: Awaited<ReturnType<typeof openTestDatabase>>;
  let redis: Redis;
  before(async () => {
    env = await openTestDatabase('sqlite');
    redis = createRedis('redis://127.0.0.1:1', logger);
  });
  after(async () => {
    redis.disconnect();
    await env.close();
  });

  it('fail-open: enforces the budgets in this process, starting from the ledger', async () => {
    const budgets = new BudgetService({ db: env.db, redis, failMode: 'open', logger });
    const p = await seedPrincipal(env.db);
    await ledger(env.db, p, new Date().toISOString(), 0.8);
    await budgets.store.set({
      scope: 'key',
      subjectId: p.apiKeyId!,
      period: 'day',
      limitUsd: 1,
      limitTokens: null,
    });
    const err = await refusal(
      budgets.reserve({ principal: p, requestId: 'a', worstCaseUsd: 0.3, worstCaseTokens: 1 }),
    );
    assert.equal(err.code, 'budget_exceeded');
    const r = await budgets.reserve({ principal: p, requestId: 'b', worstCaseUsd: 0.1, worstCaseTokens: 1 });
    await budgets.settle(r, 0.05, 1);
  });

  it('fail-closed: refuses with 503 before the provider is called', async () => {
    const budgets = new BudgetService({ db: env.db, redis, failMode: 'closed', logger });
    const p = await seedPrincipal(env.db);
    await budgets.store.set({
      scope: 'key',
      subjectId: p.apiKeyId!,
      period: 'day',
      limitUsd: 1,
      limitTokens: null,
    });
    const err = await refusal(
      budgets.reserve({ principal: p, requestId: 'a', worstCaseUsd: 0.1, worstCaseTokens: 1 }),
    );
    assert.equal(err.status, 503);
    assert.equal(err.code, 'service_unavailable');
    assert.equal(err.options.headers?.['retry-after'], '5');
  });
});

for (const dialect of DIALECTS) {
  describe(`budget ledger reconciliation (${dialect})`, () => {
    let env: Awaited<ReturnType<typeof openTestDatabase>>;
    before(async () => {
      env = await openTestDatabase(dialect);
    });
    after(async () => env?.close());

    it('reconcile recomputes the day and month from usage_records and resets the counters', async () => {
      const clock = manualClock('2031-01-15T12:00:00Z');
      const p = await seedPrincipal(env.db);
      const other = await seedPrincipal(env.db, p.userId!);
      await ledger(env.db, p, '2031-01-15T00:00:00.000Z', 0.5, [1000, 500]);
      await ledger(env.db, p, '2031-01-15T11:00:00.000Z', 0.25, [100, 100]);
      await ledger(env.db, p, '2031-01-14T23:59:59.999Z', 1, [10, 10]);
      await ledger(env.db, p, '2030-12-31T23:59:59.999Z', 50, [1, 1]); // last month
      await ledger(env.db, p, '2031-01-16T00:00:00.000Z', 70, [1, 1]); // after "now": not this day
      await ledger(env.db, other, '2031-01-15T10:00:00.000Z', 2, [7, 7]); // same user, other key

      const budgets = new BudgetService({ db: env.db, logger, now: clock.now });
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      await budgets.store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'month',
        limitUsd: null,
        limitTokens: 1e6,
      });

      const key = await budgets.reconcile({ scope: 'key', subjectId: p.apiKeyId! });
      near(key.day.usd, 0.75, 'key day usd');
      assert.equal(key.day.tokens, 1700);
      near(key.month.usd, 71.75, 'key month usd');
      assert.equal(key.month.tokens, 1722);
      const user = await budgets.reconcile({ scope: 'user', subjectId: p.userId! });
      near(user.day.usd, 2.75, 'user day usd');
      near(user.month.usd, 73.75, 'user month usd');

      // Counters that drifted (spend settled here but never recorded) are reset to the ledger.
      const r = await budgets.reserve({
        principal: p,
        requestId: 'r',
        worstCaseUsd: 0.2,
        worstCaseTokens: 1,
      });
      await budgets.settle(r, 0.2, 1);
      const inFlight = await budgets.reserve({
        principal: p,
        requestId: 'f',
        worstCaseUsd: 0.01,
        worstCaseTokens: 1,
      });
      await budgets.reconcile({ scope: 'key', subjectId: p.apiKeyId! });
      const status = await budgets.status({ scope: 'key', subjectId: p.apiKeyId! });
      const day = status.find((s) => s.period === 'day')!;
      near(day.spentUsd, 0.75, 'day spent after reconcile');
      near(day.reservedUsd, 0.01, 'reservations in flight are kept');
      await budgets.release(inFlight);
      await refusal(budgets.reserve({ principal: p, requestId: 'x', worstCaseUsd: 0.3, worstCaseTokens: 1 }));
    });

    it('budgets are stored per subject and period, replaced on set', async () => {
      const store = new BudgetStore(env.db);
      const p = await seedPrincipal(env.db);
      await store.set({ scope: 'user', subjectId: p.userId!, period: 'day', limitUsd: 5, limitTokens: null });
      await store.set({ scope: 'user', subjectId: p.userId!, period: 'day', limitUsd: 6, limitTokens: 1000 });
      await store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'month',
        limitUsd: 100,
        limitTokens: null,
      });
      assert.deepEqual(await store.forPrincipal(p), [
        { scope: 'key', subjectId: p.apiKeyId!, period: 'month', limitUsd: 100, limitTokens: null },
        { scope: 'user', subjectId: p.userId!, period: 'day', limitUsd: 6, limitTokens: 1000 },
      ]);
      assert.equal(await store.remove('user', p.userId!, 'day'), 1);
      assert.equal((await store.forPrincipal(p)).length, 1);
      await assert.rejects(
        store.set({ scope: 'key', subjectId: p.apiKeyId!, period: 'day', limitUsd: -1, limitTokens: null }),
      );
    });

    it('knows a subject has no budget only from a fresh read, and forgets it when one is set', async () => {
      const realNow = Date.now;
      const store = new BudgetStore(env.db, { cacheTtlMs: 1_000 });
      const p = await seedPrincipal(env.db);
      assert.equal(store.knownNone(p), false, 'never read: unknown');
      assert.deepEqual(await store.forPrincipal(p), []);
      const readAt = Date.now();
      assert.equal(store.knownNone(p), true);
      try {
        Date.now = () => readAt + 1_001;
        assert.equal(store.knownNone(p), false, 'expired: unknown again');
      } finally {
        Date.now = realNow;
      }
      await store.forPrincipal(p);
      await store.set({
        scope: 'key',
        subjectId: p.apiKeyId!,
        period: 'day',
        limitUsd: 1,
        limitTokens: null,
      });
      assert.equal(store.knownNone(p), false, 'a budget set through the store applies at once');
      assert.equal((await store.forPrincipal(p)).length, 1);
      assert.equal(store.knownNone(p), false);
    });
  });
}
