import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { markSuiteRan } from '../../../test/helpers/databases.js';
import { SessionCache } from './session-cache.js';

/** A loader over `signedIn` (the sessions with a live refresh token) that counts database reads. */
function database(signedIn: Set<string>) {
  const reads = { count: 0 };
  const load = (sessionId: string) => async () => {
    reads.count++;
    return signedIn.has(sessionId);
  };
  return { reads, load };
}

describe('SessionCache', () => {
  it('reads a busy session once per TTL; a signed-out one is remembered for good', async () => {
    const signedIn = new Set(['rtf_1']);
    const db = database(signedIn);
    const cache = new SessionCache({ ttlMs: 60 });
    assert.equal(await cache.isActive('rtf_1', 'usr_1', db.load('rtf_1')), true);
    assert.equal(await cache.isActive('rtf_1', 'usr_1', db.load('rtf_1')), true);
    assert.equal(db.reads.count, 1);
    await sleep(80);
    assert.equal(await cache.isActive('rtf_1', 'usr_1', db.load('rtf_1')), true);
    assert.equal(db.reads.count, 2, 'read again after the TTL');
    assert.equal(await cache.isActive('rtf_gone', 'usr_1', db.load('rtf_gone')), false);
    await sleep(80);
    assert.equal(await cache.isActive('rtf_gone', 'usr_1', db.load('rtf_gone')), false);
    assert.equal(db.reads.count, 3, 'a signed-out session never comes back: not read again');
  });

  it('forgets a session at sign-out, and every session of a user', async () => {
    const signedIn = new Set(['rtf_1', 'rtf_2', 'rtf_3']);
    const db = database(signedIn);
    const cache = new SessionCache({ ttlMs: 60_000 });
    for (const [sid, user] of [
      ['rtf_1', 'usr_a'],
      ['rtf_2', 'usr_a'],
      ['rtf_3', 'usr_b'],
    ] as const)
      await cache.isActive(sid, user, db.load(sid));
    signedIn.delete('rtf_1');
    await cache.forgetSession('rtf_1');
    assert.equal(await cache.isActive('rtf_1', 'usr_a', db.load('rtf_1')), false);
    signedIn.delete('rtf_2');
    await cache.forgetUser('usr_a');
    assert.equal(await cache.isActive('rtf_2', 'usr_a', db.load('rtf_2')), false);
    const reads = db.reads.count;
    assert.equal(await cache.isActive('rtf_3', 'usr_b', db.load('rtf_3')), true);
    assert.equal(db.reads.count, reads, "another user's session stays cached");
  });

  it('a read that started before a sign-out does not store its stale answer', async () => {
    const cache = new SessionCache({ ttlMs: 60_000 });
    let release!: () => void;
    const slow = cache.isActive(
      'rtf_1',
      'usr_1',
      () => new Promise<boolean>((r) => (release = () => r(true))),
    );
    await cache.forgetSession('rtf_1');
    release();
    assert.equal(await slow, true);
    assert.equal(await cache.isActive('rtf_1', 'usr_1', async () => false), false);
  });
});

const REDIS_URL = process.env.TEST_REDIS_URL;

describe('SessionCache across replicas (Redis)', {
  skip: REDIS_URL ? false : 'TEST_REDIS_URL not set: Redis suite skipped',
}, () => {
  const clients: Redis[] = [];
  const caches: SessionCache[] = [];
  after(async () => {
    await Promise.all(caches.map((c) => c.close()));
    for (const c of clients) c.disconnect();
  });

  async function replica(channel: string) {
    const redis = new Redis(REDIS_URL!, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    await new Promise((resolve) => redis.once('ready', resolve));
    clients.push(redis);
    const cache = new SessionCache({ ttlMs: 60_000, redis, channel });
    caches.push(cache);
    return cache;
  }

  it('a sign-out on one replica is honoured by the other at once, not after the TTL', async () => {
    markSuiteRan('redis');
    const channel = `colloquy:test:sessions:${randomBytes(6).toString('hex')}`;
    const [a, b] = [await replica(channel), await replica(channel)];
    const signedIn = new Set(['rtf_1']);
    const db = database(signedIn);
    for (const cache of [a, b]) assert.equal(await cache.isActive('rtf_1', 'usr_1', db.load('rtf_1')), true);
    signedIn.delete('rtf_1');
    // Repeated until B's subscription (made when its connection became ready) hears it; the TTL is a minute.
    const deadline = Date.now() + 2_000;
    let refused = false;
    while (!refused && Date.now() < deadline) {
      await a.forgetSession('rtf_1');
      refused = !(await b.isActive('rtf_1', 'usr_1', db.load('rtf_1')));
      if (!refused) await sleep(10);
    }
    assert.ok(refused, 'replica B refuses the signed-out session');
  });
});
