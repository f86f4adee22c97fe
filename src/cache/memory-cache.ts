import { LRUCache } from 'lru-cache';
import {
  assertKey,
  assertPattern,
  byteLengthOf,
  type Cache,
  type CacheHealth,
  type CacheKey,
  type CacheValue,
  DEFAULT_MAX_ENTRY_BYTES,
  globMatch,
  type InvalidateResult,
  ttlOf,
} from './cache.js';

export interface MemoryCacheOptions {
  /** Most entries held; the least recently used go first. */
  maxEntries: number;
  /** Most bytes held, keys and values counted. */
  maxBytes: number;
  /** Largest value stored (default 2 MiB, never more than maxBytes). */
  maxEntryBytes?: number;
}

/**
 * The in-process store: an LRU bounded by entry count and total bytes, with a TTL per entry. Expired
 * entries are never returned; they are reclaimed when read or when the LRU needs their room (no timers).
 */
export class MemoryCache implements Cache {
  readonly store = 'memory' as const;
  readonly maxEntryBytes: number;
  readonly #lru: LRUCache<string, CacheValue>;

  constructor(options: MemoryCacheOptions) {
    const { maxEntries, maxBytes } = options;
    if (!Number.isSafeInteger(maxEntries) || maxEntries <= 0) {
      throw new TypeError('maxEntries must be a positive integer');
    }
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new TypeError('maxBytes must be a positive integer');
    }
    this.maxEntryBytes = Math.min(options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES, maxBytes);
    this.#lru = new LRUCache<string, CacheValue>({
      max: maxEntries,
      maxSize: maxBytes,
      sizeCalculation: (value, key) => Math.max(1, byteLengthOf(value) + Buffer.byteLength(key)),
      allowStale: false,
      updateAgeOnGet: false,
      updateAgeOnHas: false,
    });
  }

  async get(key: CacheKey): Promise<string | undefined> {
    assertKey(key);
    const value = this.#lru.get(key);
    if (value === undefined) return undefined;
    return typeof value === 'string' ? value : value.toString('utf8');
  }

  async getBuffer(key: CacheKey): Promise<Buffer | undefined> {
    assertKey(key);
    const value = this.#lru.get(key);
    if (value === undefined) return undefined;
    // A copy: callers may scribble on what they get without changing the cached entry.
    return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
  }

  async set(key: CacheKey, value: CacheValue, ttlMs: number): Promise<boolean> {
    assertKey(key);
    const ttl = ttlOf(ttlMs);
    if (byteLengthOf(value) > this.maxEntryBytes) {
      this.#lru.delete(key);
      return false;
    }
    // Buffers are copied so a caller reusing its buffer cannot change what is cached.
    this.#lru.set(key, typeof value === 'string' ? value : Buffer.from(value), { ttl });
    // Refused when the key and value together exceed maxBytes (the LRU removes any older value then).
    return this.#lru.has(key);
  }

  async delete(key: CacheKey): Promise<boolean> {
    assertKey(key);
    const existed = this.#lru.has(key);
    this.#lru.delete(key);
    return existed;
  }

  async invalidate(pattern: CacheKey): Promise<InvalidateResult> {
    assertPattern(pattern);
    const matching: string[] = [];
    for (const key of this.#lru.keys()) if (globMatch(pattern, key)) matching.push(key);
    let removed = 0;
    for (const key of matching) if (this.#lru.delete(key)) removed++;
    return { removed, complete: true };
  }

  async health(): Promise<CacheHealth> {
    return { store: 'memory', up: true, entries: this.#lru.size, bytes: this.#lru.calculatedSize };
  }
}
