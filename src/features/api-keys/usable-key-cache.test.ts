import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { markSuiteRan } from '../../../test/helpers/databases.js';
import type { KeyOwner } from './store.js';
import { UsableKeyCache } from './usable-key-cache.js';

const owner = (keyId: string, userId = 'usr_1', expiresAt: string | null = null): KeyOwner => ({
  keyId,
  userId,
  role: 'user',
  lastUsedAt: null,
  expiresAt,
});

/** A loader that answers from `table` (undefined once a key is "revoked") and counts database reads. */
function database(table: Map<string, KeyOwner>) {
  const reads = { count: 0 };
  const load = (hash: string) => async () => {
    reads.count++;
    return table.get(hash);
  };
  return { reads, load };
}

describe('UsableKeyCache', () => {
  it('reads the database once per TTL for a busy key, again after it', async () => {
    const table = new Map([['h1', owner('key_1')]]);
    const db = database(table);
    const cache = new UsableKeyCache({ ttlMs: 60 });
    const answers = await Promise.all(Array.from({ length: 20 }, () => cache.get('h1', db.load('h1'))));
    assert.ok(answers.every((a) => a?.keyId === 'key_1'));
    assert.equal(db.reads.count, 1, 'concurrent requests share one read');
    await cache.get('h1', db.load('h1'));
    assert.equal(db.reads.count, 1);
    await sleep(80);
    await cache.get('h1', db.load('h1'));
    assert.equal(db.reads.count, 2, 'an entry older than the TTL is read again');
  });

  it('refuses a revoked key at once, and keeps other keys cached', async () => {
    const table = new Map([
      ['h1', owner('key_1')],
      ['h2', owner('key_2')],
    ]);
    const db = database(table);
    const cache = new UsableKeyCache({ ttlMs: 60_000 });
    await cache.get('h1', db.load('h1'));
    await cache.get('h2', db.load('h2'));
    table.delete('h1');
    await cache.forgetKey('key_1');
    assert.equal(await cache.get('h1', db.load('h1')), undefined);
    assert.equal((await cache.get('h2', db.load('h2')))?.keyId, 'key_2');
    assert.equal(db.reads.count, 3, 'only the revoked key was read again');
  });

  it('forgets every key of a disabled user', async () => {
    const table = new Map([
      ['h1', owner('key_1', 'usr_a')],
      ['h2', owner('key_2', 'usr_a')],
      ['h3', owner('key_3', 'usr_b')],
    ]);
    const db = database(table);
    const cache = new UsableKeyCache({ ttlMs: 60_000 });
    for (const h of ['h1', 'h2', 'h3']) await cache.get(h, db.load(h));
    table.delete('h1');
    table.delete('h2');
    await cache.forgetUser('usr_a');
    assert.equal(await cache.get('h1', db.load('h1')), undefined);
    assert.equal(await cache.get('h2', db.load('h2')), undefined);
    assert.equal((await cache.get('h3', db.load('h3')))?.keyId, 'key_3');
  });

  it('does not keep an answer read before a revocation that happened during the read', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const cache = new UsableKeyCache({ ttlMs: 60_000 });
    // The read sees the key still usable, but the revocation lands before it returns.
    const slow = cache.get('h1', async () => {
      await gate;
      return owner('key_1');
    });
    await cache.forgetKey('key_1');
    let reads = 0;
    const after = cache.get('h1', async () => {
      reads++;
      return undefined;
    });
    release();
    assert.equal((await slow)?.keyId, 'key_1');
    assert.equal(await after, undefined, 'a request after the revocation does not join the old read');
    assert.equal(await cache.get('h1', async () => undefined), undefined, 'the old answer was not stored');
    assert.equal(reads, 1);
  });

  it('stops accepting a cached key when the key itself expires', async () => {
    const cache = new UsableKeyCache({ ttlMs: 60_000 });
    let reads = 0;
    const load = async () => {
      reads++;
      return reads === 1 ? owner('key_1', 'usr_1', new Date(Date.now() + 50).toISOString()) : undefined;
    };
    assert.ok(await cache.get('h1', load));
    assert.ok(await cache.get('h1', load));
    await sleep(70);
    assert.equal(await cache.get('h1', load), undefined);
    assert.equal(reads, 2);
  });

  it('drops the least recently used key past its bound', async () => {
    const cache = new UsableKeyCache({ ttlMs: 60_000, maxEntries: 2 });
    let reads = 0;
    const load = (id: string) => async () => {
      reads++;
      return owner(id);
    };
    await cache.get('h1', load('key_1'));
    await cache.get('h2', load('key_2'));
    await cache.get('h3', load('key_3'));
    assert.equal(reads, 3);
    await cache.get('h3', load('key_3'));
    await cache.get('h2', load('key_2'));
    assert.equal(reads, 3, 'the two newest stayed');
    await cache.get('h1', load('key_1'));
    assert.equal(reads, 4, 'the oldest was dropped');
  });
});

const REDIS_URL = process.env.TEST_REDIS_URL;

describe('UsableKeyCache across replicas (Redis)', {
  skip: REDIS_URL ? false : 'TEST_REDIS_URL not set: Redis suite skipped',
}, () => {
  const clients: Redis[] = [];
  const caches: UsableKeyCache[] = [];
  after(async () => {
    await Promise.all(caches.map((c) => c.close()));
    for (const c of clients) c.disconnect();
  });

  async function replica(channel: string) {
    const redis = new Redis(REDIS_URL!, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    await new Promise((resolve) => redis.once('ready', resolve));
    clients.push(redis);
    const cache = new UsableKeyCache({ ttlMs: 60_000, redis, channel });
    caches.push(cache);
    return cache;
  }

  it('a key revoked on one replica is refused by the other at once, not after the TTL', async () => {
    markSuiteRan('redis');
    const channel = `colloquy:test:keys:${randomBytes(6).toString('hex')}`;
    const [a, b] = [await replica(channel), await replica(channel)];
    // B's subscription holds once it hears an announcement (it drops what it cached before: nothing yet).
    const heard: string[] = [];
    b.onForget((_kind, id) => heard.push(id));
    await waitFor(async () => {
      await a.forgetKey('key_warm_up');
      return heard.includes('key_warm_up');
    });
    const table = new Map([
      ['h1', owner('key_1', 'usr_a')],
      ['h2', owner('key_2', 'usr_b')],
    ]);
    const db = database(table);
    for (const cache of [a, b]) {
      await cache.get('h2', db.load('h2'));
      await cache.get('h1', db.load('h1'));
    }
    const readsBefore = db.reads.count;
    table.delete('h1');
    // Repeated until B's subscription (made when its connection became ready) hears it; the TTL is a minute.
    await waitFor(async () => {
      await a.forgetKey('key_1');
      return (await b.get('h1', db.load('h1'))) === undefined;
    });
    assert.ok(db.reads.count > readsBefore, 'replica B read the revoked key again');
    const reads = db.reads.count;
    assert.equal((await b.get('h2', db.load('h2')))?.keyId, 'key_2');
    assert.equal(db.reads.count, reads, 'B kept the other key cached');
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 2_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(10);
  }
  assert.fail(`not within ${timeoutMs} ms`);
}
