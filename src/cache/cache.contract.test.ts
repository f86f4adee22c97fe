import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pino from 'pino';
import { markSuiteRan } from '../../test/helpers/databases.js';
import { freePort } from '../../test/helpers/net.js';
import { lockRedisTests } from '../../test/helpers/redis-lock.js';
import { createRedis } from '../core/redis.js';
import { type Cache, cacheKey, escapeGlob, globMatch } from './cache.js';
import { createCache } from './index.js';
import { MemoryCache } from './memory-cache.js';
import { RedisCache } from './redis-cache.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const RUN_PREFIX = `colloquy:test:${randomBytes(6).toString('hex')}:`;
const silent = pino({ level: 'silent' });

type Make = (options?: { maxEntryBytes?: number }) => Cache;

/** The behaviour every store shares; `make` builds a fresh, empty cache for each test. */
function contract(make: Make) {
  it('misses an absent key, returns what was set, and overwrites', async () => {
    const cache = make();
    assert.equal(await cache.get('responses:absent'), undefined);
    assert.equal(await cache.getBuffer('responses:absent'), undefined);
    assert.equal(await cache.set('responses:a', 'héllo ✓', 60_000), true);
    assert.equal(await cache.get('responses:a'), 'héllo ✓');
    assert.deepEqual(await cache.getBuffer('responses:a'), Buffer.from('héllo ✓'));
    assert.equal(await cache.set('responses:a', 'second', 60_000), true);
    assert.equal(await cache.get('responses:a'), 'second');
    assert.equal(await cache.set('models:empty', '', 60_000), true);
    assert.equal(await cache.get('models:empty'), '');
  });

  it('round-trips binary values byte for byte', async () => {
    const cache = make();
    const bytes = Buffer.from([...Array.from({ length: 256 }, (_, i) => i), 0xc3, 0x28, 0xff, 0xfe, 0]);
    assert.equal(await cache.set('sessions:blob', bytes, 60_000), true);
    const back = await cache.getBuffer('sessions:blob');
    assert.ok(back && Buffer.isBuffer(back));
    assert.ok(back.equals(bytes), 'same bytes');
    bytes[0] = 42; // the caller's buffer changing later does not change the entry
    assert.equal((await cache.getBuffer('sessions:blob'))?.[0], 0);
  });

  it('expires entries after their TTL, each on its own', async () => {
    const cache = make();
    await cache.set('limits:short', 'x', 60);
    await cache.set('limits:long', 'y', 60_000);
    assert.equal(await cache.get('limits:short'), 'x');
    await sleep(150);
    assert.equal(await cache.get('limits:short'), undefined);
    assert.equal(await cache.getBuffer('limits:short'), undefined);
    assert.equal(await cache.get('limits:long'), 'y');
    assert.equal(await cache.delete('limits:short'), false, 'an expired entry is gone');
  });

  it('deletes one key', async () => {
    const cache = make();
    await cache.set('sessions:one', '1', 60_000);
    await cache.set('sessions:two', '2', 60_000);
    assert.equal(await cache.delete('sessions:one'), true);
    assert.equal(await cache.delete('sessions:one'), false);
    assert.equal(await cache.get('sessions:one'), undefined);
    assert.equal(await cache.get('sessions:two'), '2');
  });

  it('invalidates by pattern inside one namespace, leaving the others alone', async () => {
    const cache = make();
    const keys = [
      'responses:user_123:a',
      'responses:user_123:b',
      'responses:user_1234:c',
      'responses:user_456:a',
      'sessions:user_123:a',
      'models:user_123:a',
    ] as const;
    for (const key of keys) await cache.set(key, key, 60_000);
    assert.deepEqual(await cache.invalidate('responses:user_123:*'), { removed: 2, complete: true });
    assert.equal(await cache.get('responses:user_123:a'), undefined);
    assert.equal(await cache.get('responses:user_123:b'), undefined);
    for (const key of keys.slice(2)) assert.equal(await cache.get(key), key, key);
    assert.deepEqual(await cache.invalidate('responses:*'), { removed: 2, complete: true });
    assert.equal(await cache.get('sessions:user_123:a'), 'sessions:user_123:a');
    assert.equal(await cache.get('models:user_123:a'), 'models:user_123:a');
    assert.deepEqual(await cache.invalidate('responses:nothing:*'), { removed: 0, complete: true });
  });

  it('matches ?, [classes] and escaped metacharacters like Redis does', async () => {
    const cache = make();
    for (const key of [
      'limits:a1',
      'limits:a2',
      'limits:a3',
      'limits:b1',
      'limits:*star',
      'limits:xstar',
    ] as const) {
      await cache.set(key, key, 60_000);
    }
    assert.equal((await cache.invalidate('limits:a[12]')).removed, 2);
    assert.equal((await cache.invalidate('limits:?1')).removed, 1); // b1
    assert.equal((await cache.invalidate(`limits:${escapeGlob('*star')}`)).removed, 1);
    assert.equal(await cache.get('limits:xstar'), 'limits:xstar', 'an escaped * is literal');
    assert.equal(await cache.get('limits:a3'), 'limits:a3');
  });

  it('invalidates more keys than one SCAN page holds', async () => {
    const cache = make();
    await Promise.all(
      Array.from({ length: 600 }, (_, i) => cache.set(cacheKey('responses', 'bulk', String(i)), 'v', 60_000)),
    );
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => cache.set(cacheKey('responses', 'keep', String(i)), 'v', 60_000)),
    );
    assert.deepEqual(await cache.invalidate('responses:bulk:*'), { removed: 600, complete: true });
    assert.equal(await cache.get('responses:bulk:599'), undefined);
    assert.equal(await cache.get('responses:keep:49'), 'v');
  });

  it('refuses values over the entry bound and drops the older value under that key', async () => {
    const cache = make({ maxEntryBytes: 1024 });
    assert.equal(cache.maxEntryBytes, 1024);
    assert.equal(await cache.set('responses:big', 'small', 60_000), true);
    assert.equal(await cache.set('responses:big', 'x'.repeat(1025), 60_000), false);
    assert.equal(await cache.get('responses:big'), undefined, 'no stale value left behind');
    assert.equal(await cache.set('responses:big', Buffer.alloc(1024, 1), 60_000), true);
  });

  it('rejects keys outside the namespaces, bare patterns and bad TTLs', async () => {
    const cache = make();
    await assert.rejects(cache.get('nope:x' as never), TypeError);
    await assert.rejects(cache.get('responses' as never), TypeError);
    await assert.rejects(cache.set('responses:' as never, 'v', 1000), TypeError);
    await assert.rejects(cache.invalidate('*' as never), TypeError);
    await assert.rejects(cache.invalidate('*:x' as never), TypeError);
    await assert.rejects(cache.set('responses:k', 'v', 0), TypeError);
    await assert.rejects(cache.set('responses:k', 'v', Number.NaN), TypeError);
    await assert.rejects(cache.set('responses:k', 42 as never, 1000), TypeError);
  });

  it('reports itself healthy', async () => {
    const health = await make().health();
    assert.equal(health.up, true);
  });
}

describe('glob matching', () => {
  it('follows Redis SCAN MATCH semantics', () => {
    const cases: [string, string, boolean][] = [
      ['responses:user_1:*', 'responses:user_1:abc', true],
      ['responses:user_1:*', 'responses:user_12:abc', false],
      ['responses:*', 'responses:', true], // * matches nothing too
      ['a*b*c', 'axxbyyc', true],
      ['a*b*c', 'axxbyy', false],
      ['h?llo', 'héllo', false], // ? is one byte, é is two
      ['h??llo', 'héllo', true],
      ['h[ae]llo', 'hallo', true],
      ['h[^e]llo', 'hello', false],
      ['h[a-b]llo', 'hbllo', true],
      ['h[b-a]llo', 'hbllo', true],
      ['h\\*llo', 'h*llo', true],
      ['h\\*llo', 'hello', false],
      ['x[\\]]', 'x]', true],
    ];
    for (const [pattern, text, expected] of cases)
      assert.equal(globMatch(pattern, text), expected, `${pattern} ~ ${text}`);
    assert.equal(escapeGlob('a*b?c[d]e\\'), 'a\\*b\\?c\\[d\\]e\\\\');
  });
});

describe('MemoryCache', () => {
  describe('contract', () => {
    contract(
      (o) =>
        new MemoryCache({ maxEntries: 10_000, maxBytes: 8 * 1024 * 1024, maxEntryBytes: o?.maxEntryBytes }),
    );
  });

  it('evicts the least recently used entry past maxEntries', async () => {
    const cache = new MemoryCache({ maxEntries: 3, maxBytes: 1_000_000 });
    await cache.set('models:a', 'a', 60_000);
    await cache.set('models:b', 'b', 60_000);
    await cache.set('models:c', 'c', 60_000);
    assert.equal(await cache.get('models:a'), 'a'); // a is now more recent than b
    await cache.set('models:d', 'd', 60_000);
    assert.equal(await cache.get('models:b'), undefined);
    assert.equal(await cache.get('models:a'), 'a');
    assert.equal(await cache.get('models:d'), 'd');
    assert.equal((await cache.health()).entries, 3);
  });

  it('stays within maxBytes, keys and values counted', async () => {
    const cache = new MemoryCache({ maxEntries: 1000, maxBytes: 500 });
    assert.equal(cache.maxEntryBytes, 500, 'the entry bound never exceeds the total');
    for (let i = 0; i < 20; i++) await cache.set(cacheKey('responses', String(i)), 'x'.repeat(80), 60_000);
    const health = await cache.health();
    assert.ok(health.bytes! <= 500, `bytes ${health.bytes}`);
    assert.ok(health.entries! >= 4 && health.entries! <= 5, `entries ${health.entries}`);
    assert.equal(await cache.get('responses:19'), 'x'.repeat(80));
    assert.equal(await cache.get('responses:0'), undefined);
    // A value within maxEntryBytes whose key pushes it over the total is refused too.
    assert.equal(await cache.set(cacheKey('responses', 'k'.repeat(100)), 'y'.repeat(450), 60_000), false);
  });

  it('hands out copies of binary values', async () => {
    const cache = new MemoryCache({ maxEntries: 10, maxBytes: 1000 });
    await cache.set('sessions:b', Buffer.from('abc'), 60_000);
    const first = await cache.getBuffer('sessions:b');
    first![0] = 0x7a;
    assert.equal(await cache.get('sessions:b'), 'abc');
  });
});

describe('createCache', () => {
  it('picks memory without a Redis client, Redis with one', async () => {
    assert.equal(createCache({ logger: silent, maxEntries: 10, maxBytes: 1000 }).store, 'memory');
    const redis = new Redis({ lazyConnect: true });
    try {
      assert.equal(createCache({ redis, logger: silent, maxEntries: 10, maxBytes: 1000 }).store, 'redis');
    } finally {
      redis.disconnect();
    }
  });
});

describe('RedisCache while Redis is unreachable', () => {
  let redis: Redis;
  let cache: RedisCache;
  const logs = recordingLogger();

  before(async () => {
    redis = createRedis(`redis://127.0.0.1:${await freePort()}`, logs.logger);
    cache = new RedisCache({ redis, logger: logs.logger, prefix: RUN_PREFIX });
    await until(() => redis.status === 'reconnecting', 3_000);
  });
  after(() => redis.disconnect());

  it('misses fast, drops writes without throwing, reports down, logs once', async () => {
    // A miss at once: without waiting for a connection, which never comes here (a hang fails by the test's
    // timeout; how fast is not asserted: a loaded machine is slow for reasons of its own).
    for (let i = 0; i < 5; i++) {
      assert.equal(await cache.get('responses:k'), undefined);
      assert.equal(await cache.getBuffer('responses:k'), undefined);
      assert.notEqual(redis.status, 'ready', 'answered without a connection');
    }
    assert.equal(await cache.set('responses:k', 'v', 60_000), false);
    assert.equal(await cache.delete('responses:k'), false);
    assert.deepEqual(await cache.invalidate('responses:*'), { removed: 0, complete: false });
    const health = await cache.health();
    assert.equal(health.up, false);
    assert.equal(health.store, 'redis');
    assert.ok(health.error);
    assert.equal(logs.cacheLines('warn').length, 1, 'one warning per outage');
  });
});

describe('RedisCache on a real Redis', {
  skip: REDIS_URL ? false : 'TEST_REDIS_URL not set: Redis cache suites skipped',
}, () => {
  const logs = recordingLogger();
  let redis: Redis;
  let admin: Redis;
  let release: () => void = () => {};
  let subjects = 0;
  const newPrefix = () => `${RUN_PREFIX}${++subjects}:`;

  before(async () => {
    markSuiteRan('redis');
    // The pause test below stops every client of this Redis: the Redis suites in src/cache take turns.
    release = await lockRedisTests(REDIS_URL!);
    redis = createRedis(REDIS_URL!, logs.logger);
    admin = new Redis(REDIS_URL!, { maxRetriesPerRequest: 1 });
    await until(() => redis.status === 'ready', 5_000);
  });
  after(async () => {
    try {
      if (admin) await deleteByPrefix(admin, RUN_PREFIX);
    } finally {
      admin?.disconnect();
      redis?.disconnect();
      release();
    }
  });

  describe('contract', () => {
    contract(
      (o) =>
        new RedisCache({
          redis,
          logger: logs.logger,
          prefix: newPrefix(),
          scanCount: 100,
          maxEntryBytes: o?.maxEntryBytes,
        }),
    );
  });

  it('keeps every key under its prefix, with a TTL', async () => {
    const prefix = newPrefix();
    const cache = new RedisCache({ redis, logger: logs.logger, prefix });
    await cache.set('responses:user:u1:abc', 'v', 30_000);
    const ttl = await admin.pttl(`${prefix}responses:user:u1:abc`);
    assert.ok(ttl > 25_000 && ttl <= 30_000, `pttl ${ttl}`);
    const health = await cache.health();
    assert.equal(health.up, true);
    assert.equal(typeof health.latencyMs, 'number');
  });

  it('does not hang on a paused Redis (CLIENT PAUSE) and recovers by itself', async () => {
    const cache = new RedisCache({ redis, logger: logs.logger, prefix: newPrefix() });
    await cache.set('responses:paused', 'v', 60_000);
    const warningsBefore = logs.cacheLines('warn').length;
    await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
    // Events, not milliseconds: a PING sent now is answered only when the pause ends; the misses, the dropped
    // write and the health report all come back before it (none of them waited for Redis).
    let pauseOver = false;
    const probe = admin.ping().then(() => {
      pauseOver = true;
    });
    assert.equal(await cache.get('responses:paused'), undefined);
    assert.equal(pauseOver, false, 'the first miss came back while Redis was still paused');
    assert.equal(await cache.get('responses:paused'), undefined);
    assert.equal(pauseOver, false, 'the second miss came back while Redis was still paused');
    await cache.set('responses:during', 'v', 60_000); // dropped or late, never thrown
    assert.equal((await cache.health()).up, false);
    assert.equal(pauseOver, false, 'the write and the health report did not wait for Redis either');

    await probe;
    await until(async () => (await cache.get('responses:paused')) === 'v', 3_000);
    assert.equal((await cache.health()).up, true);
    assert.equal(logs.cacheLines('warn').length - warningsBefore, 1, 'one warning for the outage');
    assert.ok(logs.cacheLines('info').some((l) => /reachable again/.test(l.msg)));
  });

  it('recovers by itself when Redis comes back after the connection dropped', async () => {
    const proxy = await TcpProxy.start(new URL(REDIS_URL!));
    const url = new URL(REDIS_URL!);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    const proxied = createRedis(url.toString(), silent);
    const proxyLogs = recordingLogger();
    try {
      const cache = new RedisCache({ redis: proxied, logger: proxyLogs.logger, prefix: newPrefix() });
      await until(() => proxied.status === 'ready', 5_000);
      assert.equal(await cache.set('sessions:s', 'v', 60_000), true);

      await proxy.stop();
      await until(() => proxied.status !== 'ready', 3_000);
      assert.equal(await cache.get('sessions:s'), undefined);
      assert.notEqual(proxied.status, 'ready', 'the miss did not wait for a reconnection');
      assert.equal(await cache.set('sessions:t', 'v', 60_000), false);
      assert.equal((await cache.health()).up, false);

      await proxy.listen();
      await until(async () => (await cache.get('sessions:s')) === 'v', 6_000);
      assert.equal((await cache.health()).up, true);
      assert.equal(proxyLogs.cacheLines('warn').length, 1);
      assert.equal(proxyLogs.cacheLines('info').length, 1);
    } finally {
      proxied.disconnect();
      await proxy.stop();
    }
  });
});

// ---- helpers ----

function recordingLogger() {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const levels = { info: 30, warn: 40 } as const;
  return {
    logger,
    cacheLines: (level: keyof typeof levels) =>
      lines.filter((l) => l.level === levels[level] && l.msg.startsWith('cache:')),
  };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function deleteByPrefix(redis: Redis, prefix: string) {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/** A TCP relay to Redis that can be cut and restored, to take Redis away from one client only. */
class TcpProxy {
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;

  private constructor(
    readonly target: URL,
    public port: number,
  ) {}

  static async start(target: URL): Promise<TcpProxy> {
    const proxy = new TcpProxy(target, 0);
    await proxy.listen();
    return proxy;
  }

  async listen() {
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(this.target.port || 6379), this.target.hostname);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  async stop() {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
}
