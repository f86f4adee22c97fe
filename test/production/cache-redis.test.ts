import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { DEFAULT_REDIS_CACHE_PREFIX } from '../../src/cache/index.js';
import { bearer } from '../helpers/app.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';
import { markSuiteRan } from '../helpers/databases.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
/** The same server, another database number: two Redis as far as Colloquy can tell. */
const onDb = (db: number) => {
  const url = new URL(REDIS_URL ?? 'redis://127.0.0.1:6379');
  url.pathname = `/${db}`;
  return url.toString();
};

async function cacheKeys(url: string): Promise<string[]> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    return await redis.keys(`${DEFAULT_REDIS_CACHE_PREFIX}*`);
  } finally {
    redis.disconnect();
  }
}

async function flush(url: string) {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    await redis.flushdb();
  } finally {
    redis.disconnect();
  }
}

/**
 * CACHE_REDIS_URL: cached answers go to a Redis of their own, which may evict them (allkeys-lru in the
 * small-host profile), while limits and budgets stay on REDIS_URL's, which never evicts.
 */
describe('CACHE_REDIS_URL: the response cache on its own Redis', {
  skip: !REDIS_URL && 'set TEST_REDIS_URL',
}, () => {
  const state = onDb(13);
  const cache = onDb(14);
  let stack: ChatStack;
  before(async () => {
    markSuiteRan('redis');
    await Promise.all([flush(state), flush(cache)]);
    stack = await startChatStack({
      env: { RESPONSE_CACHE_TTL_SECONDS: '3600', REDIS_URL: state, CACHE_REDIS_URL: cache },
    });
  });
  after(async () => {
    await stack?.close();
    await Promise.all([flush(state), flush(cache)]);
  });

  it('a cached answer is stored in, and served from, the cache Redis; the state Redis holds no cache key', async () => {
    const ask = () =>
      fetch(`${stack.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(stack.apiKey) },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          temperature: 0,
          messages: [{ role: 'user', content: 'cache me on the cache Redis' }],
        }),
      });
    const first = await ask();
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-cache'), 'miss');
    await first.arrayBuffer();
    // The store is written after the answer: wait for the key, by event count not by time.
    let stored: string[] = [];
    for (let i = 0; i < 50 && stored.length === 0; i++) {
      stored = await cacheKeys(cache);
      if (!stored.length) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(stored.length > 0, 'the answer is in the cache Redis');
    assert.deepEqual(await cacheKeys(state), [], 'nothing cached on the state Redis');
    const second = await ask();
    assert.equal(second.headers.get('x-cache'), 'hit');
    await second.arrayBuffer();
  });
});
