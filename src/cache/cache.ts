/**
 * The one cache contract: namespaced string keys, string or binary values (callers serialise), a TTL on
 * every entry, deletion by key or by glob pattern within a namespace, a size bound and a health probe.
 *
 * Two stores implement it: MemoryCache (one process, an LRU bounded by entries and bytes) and RedisCache
 * (shared between instances). A cache is an optimisation, never a source of truth: neither store throws
 * because its backing store is away — reads miss, writes are dropped and `health()` says so.
 */

/** Every namespace in use. Adding one is a one-line change here; keys outside these are refused. */
export const CACHE_NAMESPACES = ['responses', 'models', 'sessions', 'limits'] as const;
export type CacheNamespace = (typeof CACHE_NAMESPACES)[number];

/** `<namespace>:<rest>`, e.g. `responses:user:usr_123:9f86d0…`. Also the shape of invalidation patterns. */
export type CacheKey = `${CacheNamespace}:${string}`;

export type CacheValue = string | Buffer;

export interface CacheHealth {
  store: 'memory' | 'redis';
  /** Whether the backing store answers. Always true for memory. */
  up: boolean;
  /** How long the probe took (redis). */
  latencyMs?: number;
  /** Entries held (memory; may include expired entries not yet reclaimed). */
  entries?: number;
  /** Bytes held, keys and values (memory). */
  bytes?: number;
  /** Why the store is down. */
  error?: string;
}

export interface InvalidateResult {
  /** Entries removed. */
  removed: number;
  /** False when the store went away midway: some matching entries may survive until their TTL. */
  complete: boolean;
}

export interface Cache {
  readonly store: 'memory' | 'redis';
  /** Values larger than this (in bytes) are not stored. */
  readonly maxEntryBytes: number;
  /** The value as UTF-8 text, or undefined on a miss (absent, expired, or store unreachable). */
  get(key: CacheKey): Promise<string | undefined>;
  /** The value as bytes, or undefined on a miss. */
  getBuffer(key: CacheKey): Promise<Buffer | undefined>;
  /**
   * Stores a value for `ttlMs` milliseconds. Resolves true when stored; false when the value is too large
   * (an older value under that key is removed then, so it cannot be served stale) or the store is away.
   */
  set(key: CacheKey, value: CacheValue, ttlMs: number): Promise<boolean>;
  /** Removes one entry; true when it existed. */
  delete(key: CacheKey): Promise<boolean>;
  /**
   * Removes every entry matching a Redis-style glob (`*`, `?`, `[a-z]`, `\` escapes) that starts with a
   * literal namespace: `responses:user:usr_1:*`. Use escapeGlob() for ids put into a pattern.
   */
  invalidate(pattern: CacheKey): Promise<InvalidateResult>;
  /** Never throws. */
  health(): Promise<CacheHealth>;
}

/** Values above this are not cached unless a store is configured otherwise. */
export const DEFAULT_MAX_ENTRY_BYTES = 2 * 1024 * 1024;

/** Joins a namespace and key parts with `:`. */
export function cacheKey(namespace: CacheNamespace, ...parts: string[]): CacheKey {
  return `${namespace}:${parts.join(':')}` as CacheKey;
}

/** Escapes glob metacharacters so `text` matches only itself inside an invalidation pattern. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

const NAMESPACES: ReadonlySet<string> = new Set(CACHE_NAMESPACES);
const MAX_KEY_BYTES = 1024;

function checkNamespaced(what: 'key' | 'pattern', value: string): void {
  if (typeof value !== 'string') throw new TypeError(`cache ${what} must be a string`);
  const colon = value.indexOf(':');
  const namespace = colon < 0 ? value : value.slice(0, colon);
  if (colon < 0 || !NAMESPACES.has(namespace)) {
    throw new TypeError(
      `cache ${what} must start with a namespace (${CACHE_NAMESPACES.join(', ')}) and ':': ${JSON.stringify(value.slice(0, 60))}`,
    );
  }
  if (colon === value.length - 1) throw new TypeError(`cache ${what} has nothing after its namespace`);
  if (Buffer.byteLength(value) > MAX_KEY_BYTES)
    throw new TypeError(`cache ${what} is over ${MAX_KEY_BYTES} bytes`);
}

export function assertKey(key: string): asserts key is CacheKey {
  checkNamespaced('key', key);
}

export function assertPattern(pattern: string): asserts pattern is CacheKey {
  checkNamespaced('pattern', pattern);
}

/** A TTL as whole milliseconds (rounded up); throws on zero, negative or non-finite values. */
export function ttlOf(ttlMs: number): number {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new TypeError(`cache TTL must be a positive number of milliseconds, got ${ttlMs}`);
  }
  return Math.ceil(ttlMs);
}

export function byteLengthOf(value: CacheValue): number {
  if (typeof value === 'string') return Buffer.byteLength(value);
  if (Buffer.isBuffer(value)) return value.length;
  throw new TypeError('cache values are strings or Buffers');
}

/**
 * Whether `text` matches a glob exactly as Redis's SCAN MATCH does (a port of Redis's stringmatchlen, on
 * UTF-8 bytes), so both stores invalidate the same entries.
 */
export function globMatch(pattern: string, text: string): boolean {
  const p = Buffer.from(pattern);
  const s = Buffer.from(text);
  const state = { skipLonger: false };
  return matchAt(p, 0, s, 0, state, 0);
}

const STAR = 42; // *
const QUESTION = 63; // ?
const OPEN = 91; // [
const CLOSE = 93; // ]
const BACKSLASH = 92; // \
const CARET = 94; // ^
const DASH = 45; // -

function matchAt(
  p: Buffer,
  pi: number,
  s: Buffer,
  si: number,
  state: { skipLonger: boolean },
  nesting: number,
): boolean {
  if (nesting > 1000) return false;
  while (pi < p.length && si < s.length) {
    switch (p[pi]) {
      case STAR: {
        while (pi + 1 < p.length && p[pi + 1] === STAR) pi++;
        if (pi === p.length - 1) return true;
        while (si < s.length) {
          if (matchAt(p, pi + 1, s, si, state, nesting + 1)) return true;
          if (state.skipLonger) return false;
          si++;
        }
        state.skipLonger = true;
        return false;
      }
      case QUESTION:
        si++;
        break;
      case OPEN: {
        pi++;
        const negate = p[pi] === CARET;
        if (negate) pi++;
        let match = false;
        const c = s[si]!;
        for (;;) {
          if (pi >= p.length) {
            pi--; // unterminated class: Redis stops at the end of the pattern
            break;
          }
          if (p[pi] === BACKSLASH && p.length - pi >= 2) {
            pi++;
            if (p[pi] === c) match = true;
          } else if (p[pi] === CLOSE) {
            break;
          } else if (p.length - pi >= 3 && p[pi + 1] === DASH) {
            let start = p[pi]!;
            let end = p[pi + 2]!;
            if (start > end) [start, end] = [end, start];
            pi += 2;
            if (c >= start && c <= end) match = true;
          } else if (p[pi] === c) {
            match = true;
          }
          pi++;
        }
        if (negate) match = !match;
        if (!match) return false;
        si++;
        break;
      }
      case BACKSLASH:
        if (p.length - pi >= 2) pi++;
        if (p[pi] !== s[si]) return false;
        si++;
        break;
      default:
        if (p[pi] !== s[si]) return false;
        si++;
    }
    pi++;
    if (si === s.length) {
      while (pi < p.length && p[pi] === STAR) pi++;
      break;
    }
  }
  return pi === p.length && si === s.length;
}
