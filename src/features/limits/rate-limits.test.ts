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
} from '../../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { AppError } from '../../core/errors.js';
import { createRedis } from '../../core/redis.js';
import { type DatabaseHandle, openDatabase } from '../../db/database.js';
import * as limitsMigration from '../../db/migrations/0003-limits.js';
import { migrateUp } from '../../db/migrator.js';
import { createMetrics } from '../../metrics/registry.js';
import type { Principal } from '../auth/principal.js';
import { DEFAULT_RATE_LIMITS, limitsConfigFromEnv, type RateLimitConfig } from './config.js';
import { LimitOverrideStore, type LimitValues } from './overrides.js';
import { RateLimitService } from './rate-limits.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const logger = pino({ level: 'silent' });
const uid = (label: string) => `${label}_${randomBytes(5).toString('hex')}`;

const viaKey = (apiKeyId = uid('key'), userId = uid('usr')): Principal => ({
  userId,
  apiKeyId,
  role: 'user',
  via: 'api_key',
});
const viaJwt = (userId = uid('usr')): Principal => ({ userId, apiKeyId: null, role: 'user', via: 'jwt' });
const MASTER: Principal = { userId: null, apiKeyId: null, role: 'admin', via: 'master_key' };

/** Limits high enough to stay out of the way, except those a test sets. */
const config = (overrides: Partial<RateLimitConfig> = {}): RateLimitConfig => ({
  enabled: true,
  requestsPerMinute: 1000,
  requestsPerHour: 100_000,
  tokensPerMinute: 0,
  concurrentStreams: 0,
  ipRequestsPerMinute: 0,
  failMode: 'open',
  ...overrides,
});

/** A fixed set of overrides, without a database. */
const staticOverrides = (values: Record<string, LimitValues>) => ({
  get: async (scope: string, id: string) => values[`${scope}:${id}`] ?? {},
});

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof AppError, `expected an AppError, got ${err}`);
    return err;
  }
  assert.fail('expected a rejection');
}

async function count(checks: Promise<unknown>[]): Promise<{ accepted: number; rejected: number }> {
  const results = await Promise.allSettled(checks);
  let accepted = 0;
  let rejected = 0;
  for (const r of results) {
    if (r.status === 'fulfilled') accepted++;
    else if (r.reason instanceof AppError && r.reason.code === 'rate_limited') rejected++;
    else throw r.reason;
  }
  return { accepted, rejected };
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

describe('rate limit configuration', () => {
  it('takes the documented defaults from an empty environment', () => {
    assert.deepEqual(limitsConfigFromEnv({}), { rateLimits: DEFAULT_RATE_LIMITS, usageRetentionDays: 90 });
    assert.deepEqual(DEFAULT_RATE_LIMITS, {
      enabled: true,
      requestsPerMinute: 60,
      requestsPerHour: 1000,
      tokensPerMinute: 100_000,
      concurrentStreams: 10,
      ipRequestsPerMinute: 120,
      failMode: 'open',
    });
  });

  it('maps every variable', () => {
    const { rateLimits, usageRetentionDays } = limitsConfigFromEnv({
      RATE_LIMIT_ENABLED: false,
      RATE_LIMIT_PER_MINUTE: 1,
      RATE_LIMIT_PER_HOUR: 2,
      RATE_LIMIT_TOKENS_PER_MINUTE: 3,
      RATE_LIMIT_CONCURRENT_STREAMS: 4,
      RATE_LIMIT_IP_PER_MINUTE: 5,
      RATE_LIMIT_FAIL_MODE: 'closed',
      USAGE_RETENTION_DAYS: 7,
    });
    assert.deepEqual(rateLimits, {
      enabled: false,
      requestsPerMinute: 1,
      requestsPerHour: 2,
      tokensPerMinute: 3,
      concurrentStreams: 4,
      ipRequestsPerMinute: 5,
      failMode: 'closed',
    });
    assert.equal(usageRetentionDays, 7);
  });
});

describe('rate limits (in memory)', () => {
  it('allows the requests per minute, then refuses with 429 rate_limited and its headers', async () => {
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 3 }) });
    const p = viaKey();
    const first = await limits.check(p, undefined);
    assert.equal(first.headers['x-ratelimit-limit'], '3');
    assert.equal(first.headers['x-ratelimit-remaining'], '2');
    const reset = Number(first.headers['x-ratelimit-reset']);
    assert.ok(reset > 0 && reset <= 60, `reset ${reset}`);
    assert.equal((await limits.check(p, undefined)).headers['x-ratelimit-remaining'], '1');
    assert.equal((await limits.check(p, undefined)).headers['x-ratelimit-remaining'], '0');

    const err = await rejection(limits.check(p, undefined));
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limited');
    assert.equal(err.type, 'rate_limit_error');
    assert.match(err.message, /3 requests per minute for this API key/);
    const headers = err.options.headers!;
    const retryAfter = Number(headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
    assert.equal(headers['x-ratelimit-limit'], '3');
    assert.equal(headers['x-ratelimit-remaining'], '0');
    assert.equal(headers['x-ratelimit-reset'], headers['retry-after']);
    // Another key of another user is not affected.
    await limits.check(viaKey(), undefined);
  });

  it('enforces requests per hour, reporting the hour window', async () => {
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 100, requestsPerHour: 4 }) });
    const p = viaJwt();
    const results = await count(Array.from({ length: 6 }, () => limits.check(p, undefined)));
    assert.deepEqual(results, { accepted: 4, rejected: 2 });
    const err = await rejection(limits.check(p, undefined));
    assert.match(err.message, /4 requests per hour for this user/);
    const retryAfter = Number(err.options.headers!['retry-after']);
    assert.ok(retryAfter > 60 && retryAfter <= 3600, `retry-after ${retryAfter}`);
    assert.equal(err.options.headers!['x-ratelimit-limit'], '4');
  });

  it('success headers describe the limit closest to running out', async () => {
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 10, requestsPerHour: 3 }) });
    const { headers } = await limits.check(viaKey(), undefined);
    assert.equal(headers['x-ratelimit-limit'], '3');
    assert.equal(headers['x-ratelimit-remaining'], '2');
    assert.ok(Number(headers['x-ratelimit-reset']) > 60);
  });

  it('counts per user across all of the user’s keys, and refused requests are not counted', async () => {
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 3 }) });
    const user = uid('usr');
    const a = viaKey(uid('key'), user);
    const b = viaKey(uid('key'), user);
    await limits.check(a, undefined);
    await limits.check(a, undefined);
    await limits.check(b, undefined);
    const err = await rejection(limits.check(b, undefined));
    assert.match(err.message, /for this user/);
    // The refused request consumed nothing for key b: with the user's limit lifted, b has 2 left of 3.
    const lifted = new RateLimitService({
      config: config({ requestsPerMinute: 3 }),
      overrides: staticOverrides({ [`user:${user}`]: { requests_per_minute: -1 } }),
    });
    const headers = (await lifted.check(b, undefined)).headers;
    assert.equal(headers['x-ratelimit-remaining'], '2');
  });

  it('limits each client address on its own', async () => {
    const limits = new RateLimitService({ config: config({ ipRequestsPerMinute: 2 }) });
    const ip = `10.${[1, 2, 3].map(() => Math.floor(Math.random() * 250)).join('.')}`;
    await limits.check(viaJwt(), ip);
    await limits.check(viaKey(), ip);
    const err = await rejection(limits.check(viaKey(), ip));
    assert.match(err.message, /2 requests per minute for this client address/);
    await limits.check(viaKey(), '192.0.2.1');
  });

  it('tokens per minute: the estimate must fit, recorded tokens count, oversized requests are not retryable', async () => {
    const limits = new RateLimitService({ config: config({ tokensPerMinute: 1000 }) });
    const p = viaKey();
    const ok = await limits.check(p, undefined, { estimatedTokens: 600 });
    assert.equal(ok.headers['x-ratelimit-limit-tokens'], '1000');
    assert.equal(ok.headers['x-ratelimit-remaining-tokens'], '400');
    await limits.recordTokens(p, 600);

    const err = await rejection(limits.check(p, undefined, { estimatedTokens: 500 }));
    assert.equal(err.code, 'rate_limited');
    assert.match(err.message, /1000 tokens per minute for this API key/);
    assert.equal(err.options.headers!['x-ratelimit-limit'], '1000');
    assert.ok(Number(err.options.headers!['retry-after']) >= 1);

    const fits = await limits.check(p, undefined, { estimatedTokens: 300 });
    assert.equal(fits.headers['x-ratelimit-remaining-tokens'], '100');

    const tooLarge = await rejection(limits.check(viaKey(), undefined, { estimatedTokens: 5000 }));
    assert.match(tooLarge.message, /request too large/);
    assert.equal(tooLarge.code, 'exceeds_token_limit');
    assert.equal(tooLarge.status, 413);
    assert.equal(tooLarge.options.headers!['x-should-retry'], 'false');
    assert.equal(tooLarge.options.headers!['retry-after'], undefined, 'waiting would not help');
  });

  it('tokens per minute: without max_tokens no output is reserved, so a small request fits a small limit', async () => {
    // Issue 19, item 10: 4,096 output tokens were reserved per request, so under a limit of 2,000 "hi" was
    // refused forever with Retry-After 60.
    const limits = new RateLimitService({ config: config({ tokensPerMinute: 2000 }) });
    const p = viaKey();
    for (let i = 0; i < 3; i++) {
      const ok = await limits.check(p, undefined, { promptTokens: 8, maxOutputTokens: undefined });
      assert.equal(ok.headers['x-ratelimit-limit-tokens'], '2000');
      await limits.recordTokens(p, 8 + 30);
    }
    // What was used counts: the prompt must fit what is left of the minute.
    await limits.recordTokens(p, 2000 - 3 * 38 - 5);
    const full = await rejection(limits.check(p, undefined, { promptTokens: 8 }));
    assert.equal(full.code, 'rate_limited');
    assert.ok(Number(full.options.headers!['retry-after']) >= 1);
  });

  it('tokens per minute: a request whose prompt and max_tokens exceed the limit is a 413 that says why', async () => {
    const limits = new RateLimitService({ config: config({ tokensPerMinute: 2000 }) });
    const withMax = await rejection(
      limits.check(viaKey(), undefined, { promptTokens: 10, maxOutputTokens: 4096 }),
    );
    assert.equal(withMax.code, 'exceeds_token_limit');
    assert.equal(withMax.options.param, 'max_tokens');
    assert.match(withMax.message, /lower max_tokens to at most 1990/);
    const longPrompt = await rejection(limits.check(viaKey(), undefined, { promptTokens: 2500 }));
    assert.equal(longPrompt.code, 'exceeds_token_limit');
    assert.equal(longPrompt.options.param, 'messages');
    // max_tokens that fits is reserved in full.
    const ok = await limits.check(viaKey(), undefined, { promptTokens: 10, maxOutputTokens: 1000 });
    assert.equal(ok.headers['x-ratelimit-remaining-tokens'], '990');
  });

  it('recorded tokens count for the user across keys', async () => {
    const limits = new RateLimitService({ config: config({ tokensPerMinute: 1000 }) });
    const user = uid('usr');
    await limits.recordTokens(viaKey(uid('key'), user), 900);
    const err = await rejection(limits.check(viaKey(uid('key'), user), undefined, { estimatedTokens: 200 }));
    assert.match(err.message, /this user/);
  });

  it('concurrent streams: refuses past the limit; release frees exactly one slot, once', async () => {
    const limits = new RateLimitService({ config: config({ concurrentStreams: 2 }) });
    const p = viaKey();
    const a = await limits.acquireStream(p);
    const b = await limits.acquireStream(p);
    const err = await rejection(limits.acquireStream(p));
    assert.equal(err.code, 'rate_limited');
    assert.match(err.message, /at most 2 for this API key/);
    assert.equal(err.options.headers!['x-ratelimit-limit'], '2');
    assert.equal(limits.heldStreams, 2);

    await a();
    await a(); // a second release frees nothing more
    const c = await limits.acquireStream(p);
    await rejection(limits.acquireStream(p));

    // The usual pattern: released in finally even when the stream fails.
    await assert.rejects(async () => {
      const release = await limits.acquireStream(viaKey(uid('key'), p.userId!)).catch(() => undefined);
      assert.equal(release, undefined, 'the user already holds 2 streams');
      throw new Error('boom');
    }, /boom/);
    await Promise.all([b(), c()]);
    assert.equal(limits.heldStreams, 0);
    const release = await limits.acquireStream(p);
    try {
      throw new Error('stream failed');
    } catch {
      // handled
    } finally {
      await release();
    }
    assert.equal(limits.heldStreams, 0);
  });

  it('per-key and per-user overrides replace the defaults (negative: unlimited, 0: none)', async () => {
    const user = uid('usr');
    const generous = uid('key');
    const suspended = uid('key');
    const limits = new RateLimitService({
      config: config({ requestsPerMinute: 2, concurrentStreams: 5 }),
      overrides: staticOverrides({
        [`key:${generous}`]: { requests_per_minute: 5 },
        [`user:${user}`]: { requests_per_minute: -1 },
        [`key:${suspended}`]: { requests_per_minute: 0, concurrent_streams: 0 },
      }),
    });
    const results = await count(
      Array.from({ length: 7 }, () => limits.check(viaKey(generous, user), undefined)),
    );
    assert.deepEqual(results, { accepted: 5, rejected: 2 });
    await rejection(limits.check(viaKey(suspended, user), undefined));
    await rejection(limits.acquireStream(viaKey(suspended, user)));
    // Another user keeps the default of 2.
    const other = viaKey();
    assert.deepEqual(await count(Array.from({ length: 3 }, () => limits.check(other, undefined))), {
      accepted: 2,
      rejected: 1,
    });
  });

  it('never limits the master key', async () => {
    const limits = new RateLimitService({
      config: config({
        requestsPerMinute: 1,
        tokensPerMinute: 10,
        concurrentStreams: 1,
        ipRequestsPerMinute: 1,
      }),
    });
    for (let i = 0; i < 10; i++) {
      assert.deepEqual(await limits.check(MASTER, '198.51.100.7', { estimatedTokens: 1000 }), {
        headers: {},
      });
      await limits.recordTokens(MASTER, 1000);
    }
    const releases = await Promise.all(Array.from({ length: 5 }, () => limits.acquireStream(MASTER)));
    await Promise.all(releases.map((r) => r()));
  });

  it('limits nothing when disabled', async () => {
    const limits = new RateLimitService({
      config: config({
        enabled: false,
        requestsPerMinute: 1,
        tokensPerMinute: 10,
        concurrentStreams: 1,
        ipRequestsPerMinute: 1,
      }),
    });
    const p = viaKey();
    for (let i = 0; i < 5; i++) {
      assert.deepEqual(await limits.check(p, '198.51.100.8', { estimatedTokens: 100 }), { headers: {} });
    }
    await limits.acquireStream(p);
    await limits.acquireStream(p);
  });

  it('a default of 0 turns that limit off', async () => {
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 0, requestsPerHour: 0 }) });
    const { headers } = await limits.check(viaKey(), undefined);
    assert.deepEqual(headers, {});
  });

  it('counts rejections in colloquy_limit_rejections_total', async () => {
    const metrics = createMetrics({ track: 'stable' });
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 1 }), metrics });
    const p = viaKey();
    await limits.check(p, undefined);
    await rejection(limits.check(p, undefined));
    const values = (await metrics.limitRejections.get()).values;
    const keyMinute = values.filter(
      (v) => v.labels.limit === 'requests_per_minute' && v.labels.scope === 'key',
    );
    assert.equal(keyMinute[0]?.value, 1);
  });

  it('counts a refusal once, even when the key and the user are both over their limits', async () => {
    // Issue 19, item 17: one refusal was counted once per scope over its limit (70 against the usage API's 41).
    const metrics = createMetrics({ track: 'stable' });
    const limits = new RateLimitService({ config: config({ requestsPerMinute: 1 }), metrics });
    const p = viaKey();
    await limits.check(p, undefined);
    for (let i = 0; i < 3; i++) await rejection(limits.check(p, undefined));
    const values = (await metrics.limitRejections.get()).values;
    assert.equal(
      values.reduce((sum, v) => sum + v.value, 0),
      3,
      JSON.stringify(values.map((v) => [v.labels, v.value])),
    );
    assert.ok(values.every((v) => v.labels.scope === 'key' || v.labels.scope === 'user'));
  });
});

for (const dialect of DIALECTS) {
  describe(`limit overrides from the database (${dialect})`, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase({
        ...parseDatabaseUrl(testDb.url),
        poolSize: 4,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
      await migrateUp(database.db);
      const tables = await database.db.introspection.getTables();
      if (!tables.some((t) => t.name === 'limit_overrides'))
        await limitsMigration.up(database.db as unknown as Kysely<unknown>);
    });
    after(async () => {
      await database?.close().catch(() => {});
      await testDb?.drop();
    });

    it('stores, updates, lists and removes overrides; the limiter applies them at once', async () => {
      const store = new LimitOverrideStore(database.db);
      const p = viaKey();
      const limits = new RateLimitService({ config: config({ requestsPerMinute: 100 }), overrides: store });
      await store.set({ scope: 'key', subjectId: p.apiKeyId!, limitName: 'requests_per_minute', value: 1 });
      await store.set({ scope: 'key', subjectId: p.apiKeyId!, limitName: 'requests_per_minute', value: 2 });
      await store.set({ scope: 'key', subjectId: p.apiKeyId!, limitName: 'concurrent_streams', value: 0 });
      assert.deepEqual(await store.list('key', p.apiKeyId!), [
        { scope: 'key', subjectId: p.apiKeyId!, limitName: 'concurrent_streams', value: 0 },
        { scope: 'key', subjectId: p.apiKeyId!, limitName: 'requests_per_minute', value: 2 },
      ]);
      assert.deepEqual(await count(Array.from({ length: 3 }, () => limits.check(p, undefined))), {
        accepted: 2,
        rejected: 1,
      });
      assert.equal(await store.remove('key', p.apiKeyId!, 'requests_per_minute'), 1);
      await limits.check(p, undefined); // back to the default of 100
      assert.equal(await store.remove('key', p.apiKeyId!), 1);
      assert.deepEqual(await store.list('key', p.apiKeyId!), []);
    });
  });
}

describe('rate limits with Redis unreachable', () => {
  let redis: Redis;
  before(() => {
    redis = createRedis('redis://127.0.0.1:1', logger);
  });
  after(() => redis.disconnect());

  it('fail-open: counts in this process and keeps enforcing the limits', async () => {
    const limits = new RateLimitService({
      config: config({ requestsPerMinute: 2, concurrentStreams: 1, failMode: 'open' }),
      redis,
      logger,
      keyPrefix: uid('rl-test'),
    });
    const p = viaKey();
    assert.deepEqual(await count(Array.from({ length: 3 }, () => limits.check(p, undefined))), {
      accepted: 2,
      rejected: 1,
    });
    const release = await limits.acquireStream(p);
    await rejection(limits.acquireStream(p));
    await release();
    await (await limits.acquireStream(p))();
    await limits.recordTokens(p, 10); // logged, never thrown
  });

  it('fail-closed: refuses with 503 service_unavailable and Retry-After', async () => {
    const limits = new RateLimitService({
      config: config({ requestsPerMinute: 2, concurrentStreams: 1, failMode: 'closed' }),
      redis,
      logger,
      keyPrefix: uid('rl-test'),
    });
    const err = await rejection(limits.check(viaKey(), undefined));
    assert.equal(err.status, 503);
    assert.equal(err.code, 'service_unavailable');
    assert.equal(err.options.headers!['retry-after'], '5');
    const streamErr = await rejection(limits.acquireStream(viaKey()));
    assert.equal(streamErr.status, 503);
    await limits.recordTokens(viaKey(), 10); // logged, never thrown
    // The master key never touches Redis.
    await limits.check(MASTER, undefined);
  });
});

describe('rate limits shared through Redis', {
  skip: REDIS_URL ? false : 'set TEST_REDIS_URL to run',
}, () => {
  let one: Redis;
  let two: Redis;
  const prefix = uid('colloquy-test:rl');

  before(async () => {
    markSuiteRan('redis');
    one = createRedis(REDIS_URL!, logger);
    two = createRedis(REDIS_URL!, logger);
    await Promise.all([redisReady(one), redisReady(two)]);
  });
  after(async () => {
    await deleteKeys(one, prefix).catch(() => {});
    one.disconnect();
    two.disconnect();
  });

  const pair = (overrides: Partial<RateLimitConfig>, options: { streamLeaseMs?: number } = {}) =>
    [one, two].map(
      (redis) =>
        new RateLimitService({ config: config(overrides), redis, logger, keyPrefix: prefix, ...options }),
    ) as [RateLimitService, RateLimitService];

  it('two instances at 3× the limit accept no more than the limit (+2%)', async () => {
    const limit = 100;
    const [a, b] = pair({ requestsPerMinute: limit });
    const p = viaKey();
    const checks = Array.from({ length: limit * 3 }, (_, i) => (i % 2 ? a : b).check(p, undefined));
    const { accepted, rejected } = await count(checks);
    assert.ok(accepted <= Math.floor(limit * 1.02), `accepted ${accepted} of ${limit * 3}`);
    assert.ok(accepted >= limit * 0.98, `accepted ${accepted}: the limit itself is allowed`);
    assert.equal(accepted + rejected, limit * 3);
  });

  it('tokens recorded by one instance count on the other', async () => {
    const [a, b] = pair({ tokensPerMinute: 1000 });
    const p = viaKey();
    await a.recordTokens(p, 800);
    const err = await rejection(b.check(p, undefined, { estimatedTokens: 300 }));
    assert.match(err.message, /tokens per minute/);
    assert.equal(
      (await b.check(p, undefined, { estimatedTokens: 100 })).headers['x-ratelimit-remaining-tokens'],
      '100',
    );
  });

  it('concurrent streams are counted across instances', async () => {
    const [a, b] = pair({ concurrentStreams: 3 });
    const p = viaKey();
    const held = await Promise.all([a.acquireStream(p), b.acquireStream(p), a.acquireStream(p)]);
    await rejection(b.acquireStream(p));
    await rejection(a.acquireStream(p));
    await held[0]!();
    await held[0]!();
    const again = await b.acquireStream(p);
    await rejection(a.acquireStream(p));
    await Promise.all([held[1]!(), held[2]!(), again()]);
    // Parallel acquisitions never exceed the limit.
    const burst = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).acquireStream(p)),
    );
    const got = burst.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<
      () => Promise<void>
    >[];
    assert.equal(got.length, 3);
    await Promise.all(got.map((r) => r.value()));
  });

  it('a held slot is renewed while its stream runs, and a crashed replica’s slots expire', async () => {
    const crashing = createRedis(REDIS_URL!, logger);
    await redisReady(crashing);
    const leaseMs = 300;
    const survivor = new RateLimitService({
      config: config({ concurrentStreams: 1 }),
      redis: one,
      logger,
      keyPrefix: prefix,
      streamLeaseMs: leaseMs,
    });
    const doomed = new RateLimitService({
      config: config({ concurrentStreams: 1 }),
      redis: crashing,
      logger,
      keyPrefix: prefix,
      streamLeaseMs: leaseMs,
    });
    const p = viaKey();
    const held = await survivor.acquireStream(p);
    await new Promise((r) => setTimeout(r, leaseMs * 3)); // renewed by its heartbeat meanwhile
    await rejection(doomed.acquireStream(p));
    await held();

    await doomed.acquireStream(p);
    crashing.disconnect(); // the replica dies without releasing
    await rejection(survivor.acquireStream(p));
    await new Promise((r) => setTimeout(r, leaseMs + 150));
    const after = await survivor.acquireStream(p);
    await after();
  });
});
