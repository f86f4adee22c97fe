import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Kysely } from 'kysely';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { newId } from '../../core/ids.js';
import { type DatabaseHandle, type Db, openDatabase } from '../../db/database.js';
import * as limitsMigration from '../../db/migrations/0003-limits.js';
import { migrateUp } from '../../db/migrator.js';
import {
  pruneUsage,
  rollup,
  spendByDay,
  spendByKey,
  spendByModel,
  spendByUser,
  startUsageJobs,
  usageReport,
  utcDay,
} from './rollups.js';
import { withLimitsTables } from './tables.js';

const uid = (label: string) => `${label}_${randomBytes(5).toString('hex')}`;

async function seedUser(db: Db): Promise<{ userId: string; keys: [string, string] }> {
  const now = new Date().toISOString();
  const userId = uid('usr');
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
  const keys = [uid('key'), uid('key')] as [string, string];
  for (const id of keys) {
    await db
      .insertInto('api_keys')
      .values({
        id,
        user_id: userId,
        name: id,
        prefix: 'ck',
        key_hash: uid('hash'),
        expires_at: null,
        last_used_at: null,
        revoked_at: null,
        created_at: now,
      })
      .execute();
  }
  return { userId, keys };
}

interface Rec {
  at: string;
  userId?: string | null;
  keyId?: string | null;
  model?: string;
  prompt?: number;
  completion?: number;
  cost?: number;
  status?: string;
  cached?: boolean;
}

async function record(db: Db, r: Rec) {
  await db
    .insertInto('usage_records')
    .values({
      id: newId('use'),
      request_id: uid('req'),
      user_id: r.userId ?? null,
      api_key_id: r.keyId ?? null,
      model: r.model ?? 'gpt-4o-mini',
      provider: 'openai',
      deployment: 'openai',
      prompt_tokens: r.prompt ?? 10,
      completion_tokens: r.completion ?? 5,
      cost_usd: r.cost ?? 0.01,
      latency_ms: 5,
      ttft_ms: null,
      status: r.status ?? 'ok',
      cached: r.cached ? 1 : 0,
      retries: 0,
      fallback: 0,
      created_at: r.at,
    })
    .execute();
}

const near = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: expected ${expected}, got ${actual}`);

for (const dialect of DIALECTS) {
  describe(`usage roll-ups and retention (${dialect})`, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;
    let db: Db;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase({
        ...parseDatabaseUrl(testDb.url),
        poolSize: 4,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
      db = database.db;
      await migrateUp(db);
      const tables = await db.introspection.getTables();
      if (!tables.some((t) => t.name === 'usage_daily'))
        await limitsMigration.up(db as unknown as Kysely<unknown>);
    });
    after(async () => {
      await database?.close().catch(() => {});
      await testDb?.drop();
    });

    const daily = (day: string) =>
      withLimitsTables(db)
        .selectFrom('usage_daily')
        .selectAll()
        .where('day', '=', day)
        .orderBy('model')
        .orderBy('api_key_id')
        .execute();

    it('rolls a day up per (user, key, model), idempotently', async () => {
      const { userId, keys } = await seedUser(db);
      const day = '2032-03-10';
      await record(db, {
        at: `${day}T00:00:00.000Z`,
        userId,
        keyId: keys[0],
        cost: 0.5,
        prompt: 100,
        completion: 50,
      });
      await record(db, { at: `${day}T12:00:00.000Z`, userId, keyId: keys[0], cost: 0.25, status: 'error' });
      await record(db, { at: `${day}T23:59:59.999Z`, userId, keyId: keys[0], cost: 0, cached: true });
      await record(db, { at: `${day}T13:00:00.000Z`, userId, keyId: keys[1], model: 'gpt-4o', cost: 1 });
      await record(db, { at: `${day}T14:00:00.000Z`, userId: null, keyId: null, model: 'gpt-4o', cost: 2 });
      await record(db, {
        at: `${day}T15:00:00.000Z`,
        userId: null,
        keyId: null,
        model: 'gpt-4o',
        status: 'partial',
      });
      await record(db, { at: '2032-03-09T23:59:59.999Z', userId, keyId: keys[0], cost: 100 }); // day before
      await record(db, { at: '2032-03-11T00:00:00.000Z', userId, keyId: keys[0], cost: 100 }); // day after

      const first = await rollup(db, day);
      assert.deepEqual(first, { day, groups: 3, requests: 6, skipped: false });
      const rows = await daily(day);
      assert.equal(rows.length, 3);
      const mini = rows.find((r) => r.model === 'gpt-4o-mini')!;
      assert.equal(mini.user_id, userId);
      assert.equal(mini.api_key_id, keys[0]);
      assert.equal(Number(mini.requests), 3);
      assert.equal(Number(mini.prompt_tokens), 120);
      assert.equal(Number(mini.completion_tokens), 60);
      near(Number(mini.cost_usd), 0.75, 'cost');
      assert.equal(Number(mini.cached_requests), 1);
      assert.equal(Number(mini.errors), 1);
      const anonymous = rows.find((r) => r.user_id === null)!;
      assert.equal(anonymous.api_key_id, null);
      assert.equal(Number(anonymous.requests), 2);
      assert.equal(Number(anonymous.errors), 1);

      // Again: the same rows, not twice as many.
      assert.deepEqual(await rollup(db, day), first);
      assert.deepEqual(await daily(day), rows);
      // A late record is picked up by the next run.
      await record(db, { at: `${day}T16:00:00.000Z`, userId, keyId: keys[1], model: 'gpt-4o', cost: 1 });
      assert.equal((await rollup(db, day)).requests, 7);
      const updated = (await daily(day)).find((r) => r.api_key_id === keys[1])!;
      assert.equal(Number(updated.requests), 2);
      await assert.rejects(rollup(db, '2032-3-1'), /YYYY-MM-DD/);
    });

    it('concurrent roll-ups of one day leave one set of rows', async () => {
      const { userId, keys } = await seedUser(db);
      const day = '2032-04-02';
      for (let i = 0; i < 5; i++)
        await record(db, { at: `${day}T0${i}:00:00.000Z`, userId, keyId: keys[i % 2] });
      await Promise.all(Array.from({ length: 8 }, () => rollup(db, day)));
      const rows = await daily(day);
      assert.equal(rows.length, 2);
      assert.equal(
        rows.reduce((n, r) => n + Number(r.requests), 0),
        5,
      );
    });

    it('reports spend per key, user, model and day: past days rolled up, today live', async () => {
      const a = await seedUser(db);
      const b = await seedUser(db);
      const d1 = '2032-05-01';
      const d2 = '2032-05-02';
      const today = '2032-05-03';
      await record(db, {
        at: `${d1}T10:00:00.000Z`,
        userId: a.userId,
        keyId: a.keys[0],
        cost: 1,
        prompt: 10,
        completion: 1,
      });
      await record(db, {
        at: `${d1}T11:00:00.000Z`,
        userId: b.userId,
        keyId: b.keys[0],
        model: 'gpt-4o',
        cost: 3,
      });
      await record(db, { at: `${d2}T10:00:00.000Z`, userId: a.userId, keyId: a.keys[1], cost: 0.5 });
      await record(db, {
        at: `${today}T01:00:00.000Z`,
        userId: a.userId,
        keyId: a.keys[0],
        cost: 0.25,
        prompt: 7,
      });
      await rollup(db, d1);
      await rollup(db, d2);
      // Recorded after the roll-up of its day: past days come from the roll-up only.
      await record(db, { at: `${d2}T20:00:00.000Z`, userId: a.userId, keyId: a.keys[1], cost: 10 });
      const now = new Date(`${today}T12:00:00.000Z`);
      const range = { from: d1, to: today, now, userId: undefined };

      const byDay = await spendByDay(db, range);
      // Other tests' records are on other days.
      assert.deepEqual(
        byDay.map((r) => [r.key, r.requests]),
        [
          [d1, 2],
          [d2, 1],
          [today, 1],
        ],
      );
      near(byDay[2]!.cost_usd, 0.25, 'today');

      const byUser = await spendByUser(db, range);
      const ua = byUser.find((r) => r.key === a.userId)!;
      near(ua.cost_usd, 1.75, 'user a');
      assert.equal(ua.requests, 3);
      assert.equal(ua.prompt_tokens, 10 + 10 + 7);
      near(byUser.find((r) => r.key === b.userId)!.cost_usd, 3, 'user b');
      assert.equal(byUser[0]!.key, b.userId, 'highest spend first');

      const byKey = await spendByKey(db, { ...range, userId: a.userId });
      assert.deepEqual(
        byKey.map((r) => [r.key, r.requests]),
        [
          [a.keys[0], 2],
          [a.keys[1], 1],
        ],
      );

      const byModel = await spendByModel(db, range);
      near(byModel.find((r) => r.key === 'gpt-4o')!.cost_usd, 3, 'gpt-4o');
      near(byModel.find((r) => r.key === 'gpt-4o-mini')!.cost_usd, 1.75, 'gpt-4o-mini');

      const onlyToday = await usageReport(db, {
        from: today,
        to: today,
        groupBy: 'api_key',
        now,
        apiKeyId: a.keys[0],
      });
      assert.deepEqual(
        onlyToday.map((r) => [r.key, r.requests]),
        [[a.keys[0], 1]],
      );
      const pastOnly = await spendByDay(db, { from: d1, to: d1, now });
      assert.deepEqual(
        pastOnly.map((r) => r.key),
        [d1],
      );
    });

    it('with TIMEZONE=Asia/Shanghai days are Shanghai days: rolled up and live, a minute before and at midnight', async () => {
      const a = await seedUser(db);
      const tz = 'Asia/Shanghai';
      const at = (iso: string, cost = 1) => record(db, { at: iso, userId: a.userId, keyId: a.keys[0], cost });
      await at('2032-06-01T15:59:00.000Z'); // 23:59 on June 1 in Shanghai
      await at('2032-06-01T16:00:00.000Z'); // 00:00 on June 2
      await at('2032-06-02T17:00:00.000Z'); // 01:00 on June 3: today
      await at('2032-06-02T23:30:00.000Z'); // 07:30 on June 3: today
      assert.equal((await rollup(db, '2032-06-01', tz)).requests, 1);
      assert.equal((await rollup(db, '2032-06-02', tz)).requests, 1);
      const now = new Date('2032-06-03T02:00:00.000Z'); // 10:00 on June 3 in Shanghai
      const range = { from: '2032-06-01', to: '2032-06-03', now, userId: a.userId };
      const days = (rows: { key: string | null; requests: number }[]) => rows.map((r) => [r.key, r.requests]);
      assert.deepEqual(days(await spendByDay(db, { ...range, timeZone: tz })), [
        ['2032-06-01', 1],
        ['2032-06-02', 1],
        ['2032-06-03', 2],
      ]);
      // The same records in UTC days (rolled up in UTC from the ledger: the UTC "today" is June 3 as well).
      await rollup(db, '2032-06-01');
      await rollup(db, '2032-06-02');
      assert.deepEqual(days(await spendByDay(db, range)), [
        ['2032-06-01', 2],
        ['2032-06-02', 2],
      ]);
    });

    it('with TIMEZONE=America/New_York the spring-forward day holds its 23 hours, no more', async () => {
      const a = await seedUser(db);
      const tz = 'America/New_York';
      const at = (iso: string) => record(db, { at: iso, userId: a.userId, keyId: a.keys[0], cost: 1 });
      // 2032-03-14 is the second Sunday of March: 00:00 EST is 05:00 UTC, the next midnight (EDT) 04:00 UTC.
      await at('2032-03-14T04:59:00.000Z'); // 23:59 on March 13
      await at('2032-03-14T05:00:00.000Z'); // 00:00 on March 14
      await at('2032-03-15T03:59:00.000Z'); // 23:59 on March 14 (EDT)
      await at('2032-03-15T04:00:00.000Z'); // 00:00 on March 15
      for (const day of ['2032-03-13', '2032-03-14', '2032-03-15']) await rollup(db, day, tz);
      const report = await spendByDay(db, {
        from: '2032-03-13',
        to: '2032-03-15',
        now: new Date('2032-03-20T12:00:00.000Z'),
        userId: a.userId,
        timeZone: tz,
      });
      assert.deepEqual(
        report.map((r) => [r.key, r.requests]),
        [
          ['2032-03-13', 1],
          ['2032-03-14', 2],
          ['2032-03-15', 1],
        ],
      );
    });

    it('prunes records past the retention in batches, rolling their days up first', async () => {
      const { userId, keys } = await seedUser(db);
      // Days of their own, far from the other tests'.
      const old1 = '2033-01-01';
      const old2 = '2033-01-02';
      const kept = '2033-01-04';
      for (let i = 0; i < 5; i++)
        await record(db, { at: `${old1}T0${i}:00:00.000Z`, userId, keyId: keys[0], cost: 0.1 });
      for (let i = 0; i < 3; i++)
        await record(db, { at: `${old2}T0${i}:00:00.000Z`, userId, keyId: keys[1], cost: 0.2 });
      await record(db, { at: `${kept}T00:00:00.000Z`, userId, keyId: keys[0] });
      // Other tests' records (2032) go first, so this test's counts are its own.
      await pruneUsage(db, { usageRetentionDays: 1, now: new Date('2033-01-01T12:00:00.000Z') });
      const now = new Date('2033-01-06T12:00:00.000Z');

      // Retention 2 days on the 6th keeps the 4th onwards.
      const bounded = await pruneUsage(db, { usageRetentionDays: 2, batchSize: 2, maxBatches: 2, now });
      assert.equal(bounded, 4, 'two batches of two');
      const rest = await pruneUsage(db, { usageRetentionDays: 2, batchSize: 2, now });
      assert.equal(rest, 4, 'the last of the first day, then the second day');
      const left = await db.selectFrom('usage_records').select(['created_at']).execute();
      assert.deepEqual(
        left.map((r) => r.created_at),
        [`${kept}T00:00:00.000Z`],
      );

      // The pruned days keep their totals, even the day being pruned when the first run stopped.
      const d1 = await daily(old1);
      assert.equal(d1.length, 1);
      assert.equal(Number(d1[0]!.requests), 5);
      near(Number(d1[0]!.cost_usd), 0.5, 'old1 cost');
      assert.equal(Number((await daily(old2))[0]!.requests), 3);
      // A roll-up of a pruned day keeps what it had instead of wiping it.
      assert.deepEqual(await rollup(db, old1), { day: old1, groups: 1, requests: 5, skipped: true });
      assert.equal(Number((await daily(old1))[0]!.requests), 5);
      const report = await spendByDay(db, { from: old1, to: old2, now });
      assert.deepEqual(
        report.map((r) => [r.key, r.requests]),
        [
          [old1, 5],
          [old2, 3],
        ],
      );

      assert.equal(await pruneUsage(db, { usageRetentionDays: 0, now }), 0, '0 keeps everything');
      assert.equal(await pruneUsage(db, { usageRetentionDays: 2, now }), 0, 'nothing left to prune');
    });

    it('the background job rolls up today and stops cleanly', async () => {
      const { userId, keys } = await seedUser(db);
      const today = utcDay(new Date());
      await record(db, {
        at: new Date().toISOString(),
        userId,
        keyId: keys[0],
        model: 'job-model',
        cost: 0.5,
      });
      const stop = startUsageJobs({ db, usageRetentionDays: 90, intervalMs: 20 });
      try {
        const deadline = Date.now() + 5_000;
        let rows: Awaited<ReturnType<typeof daily>> = [];
        while (Date.now() < deadline) {
          rows = (await daily(today)).filter((r) => r.model === 'job-model');
          if (rows.length) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(rows.length, 1);
        assert.equal(Number(rows[0]!.requests), 1);
      } finally {
        await stop();
      }
    });
  });
}
