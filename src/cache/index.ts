import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';
import type { Cache } from './cache.js';
import { MemoryCache } from './memory-cache.js';
import { RedisCache } from './redis-cache.js';

export * from './cache.js';
export { MemoryCache, type MemoryCacheOptions } from './memory-cache.js';
export { DEFAULT_REDIS_CACHE_PREFIX, RedisCache, type RedisCacheOptions } from './redis-cache.js';
export * from './response-cache.js';

export interface CreateCacheOptions {
  /** With a client (from createRedis), the cache is shared through Redis; without, it lives in memory. */
  redis?: Redis | undefined;
  logger: Logger;
  /** Memory store bounds (Redis is bounded by its own maxmemory policy; every key there has a TTL). */
  maxEntries: number;
  maxBytes: number;
  /** Largest value stored, both stores (default 2 MiB). */
  maxEntryBytes?: number;
  /** Redis key prefix (default `colloquy:cache:`). */
  prefix?: string;
  /** Redis per-command budget in ms (default 200). */
  timeoutMs?: number;
}

/** The store for this deployment: Redis when configured (shared by every instance), memory otherwise. */
export function createCache(options: CreateCacheOptions): Cache {
  if (options.redis) {
    return new RedisCache({
      redis: options.redis,
      logger: options.logger,
      prefix: options.prefix,
      timeoutMs: options.timeoutMs,
      maxEntryBytes: options.maxEntryBytes,
    });
  }
  return new MemoryCache({
    maxEntries: options.maxEntries,
    maxBytes: options.maxBytes,
    maxEntryBytes: options.maxEntryBytes,
  });
}
