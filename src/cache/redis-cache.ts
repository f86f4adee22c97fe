import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';
import {
  assertKey,
  assertPattern,
  byteLengthOf,
  type Cache,
  type CacheHealth,
  type CacheKey,
  type CacheValue,
  DEFAULT_MAX_ENTRY_BYTES,
  escapeGlob,
  type InvalidateResult,
  ttlOf,
} from './cache.js';

export interface RedisCacheOptions {
  /** A client from createRedis (no offline queue, commandTimeout); the cache does not own or close it. */
  redis: Redis;
  logger: Logger;
  /** Every key lives under this prefix (default `colloquy:cache:`). */
  prefix?: string;
  /** The longest a caller waits for Redis on any one command before it counts as a miss (default 200 ms). */
  timeoutMs?: number;
  /** Largest value stored (default 2 MiB). */
  maxEntryBytes?: number;
  /** SCAN COUNT hint for pattern invalidation (default 500). */
  scanCount?: number;
  /**
   * While Redis is down, one command at a time probes it; the others miss at once instead of each
   * waiting `timeoutMs`. A probe that never settles frees its slot after this long (default 1 s).
   */
  probeWindowMs?: number;
}

export const DEFAULT_REDIS_CACHE_PREFIX = 'colloquy:cache:';

/** Connection states in which a command cannot be answered: miss at once, without sending anything. */
const DISCONNECTED = new Set(['reconnecting', 'close', 'end']);
/** Still (re)connecting: miss at once without calling it an outage. */
const CONNECTING = new Set(['connecting', 'connect']);

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown; timedOut: boolean };

/**
 * The shared store, on Redis: SET PX / GET / UNLINK, SCAN + UNLINK for patterns (never KEYS), every key
 * under a prefix. Redis going away never reaches callers: reads miss, writes are dropped, `health()` is
 * down, one warning is logged per outage and one line when it is back. Recovery needs nothing: ioredis
 * reconnects, and the first command that succeeds marks the store up again. Each command is bounded by
 * `timeoutMs` of our own, so even a Redis that accepts connections but does not answer (CLIENT PAUSE, a
 * stalled network) costs a request at most that long.
 */
export class RedisCache implements Cache {
  readonly store = 'redis' as const;
  readonly maxEntryBytes: number;
  readonly prefix: string;
  readonly #redis: Redis;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #scanCount: number;
  readonly #probeWindowMs: number;
  #up = true;
  #lastError: string | undefined;
  #probing = 0; // id of the probe in flight, 0 when none
  #probeSeq = 0;
  #replyErrorLoggedAt = 0;

  constructor(options: RedisCacheOptions) {
    this.#redis = options.redis;
    this.#logger = options.logger;
    this.prefix = options.prefix ?? DEFAULT_REDIS_CACHE_PREFIX;
    if (!this.prefix) throw new TypeError('the Redis cache prefix must not be empty');
    this.#timeoutMs = options.timeoutMs ?? 200;
    this.maxEntryBytes = options.maxEntryBytes ?? DEFAULT_MAX_ENTRY_BYTES;
    this.#scanCount = options.scanCount ?? 500;
    this.#probeWindowMs = options.probeWindowMs ?? 1_000;
  }

  async get(key: CacheKey): Promise<string | undefined> {
    assertKey(key);
    const value = await this.#run('get', () => this.#redis.get(this.prefix + key), null);
    return value ?? undefined;
  }

  async getBuffer(key: CacheKey): Promise<Buffer | undefined> {
    assertKey(key);
    const value = await this.#run('get', () => this.#redis.getBuffer(this.prefix + key), null);
    return value ?? undefined;
  }

  async set(key: CacheKey, value: CacheValue, ttlMs: number): Promise<boolean> {
    assertKey(key);
    const ttl = ttlOf(ttlMs);
    if (byteLengthOf(value) > this.maxEntryBytes) {
      // Not stored; an older value must not keep being served in its place.
      await this.#run('unlink', () => this.#redis.unlink(this.prefix + key), 0);
      return false;
    }
    const reply = await this.#run('set', () => this.#redis.set(this.prefix + key, value, 'PX', ttl), null);
    return reply === 'OK';
  }

  async delete(key: CacheKey): Promise<boolean> {
    assertKey(key);
    return (await this.#run('unlink', () => this.#redis.unlink(this.prefix + key), 0)) > 0;
  }

  async invalidate(pattern: CacheKey): Promise<InvalidateResult> {
    assertPattern(pattern);
    // SCAN MATCH sees full key names, the client's own keyPrefix included (ioredis adds that prefix to
    // key arguments but not to patterns); UNLINK takes names without it.
    const clientPrefix = this.#redis.options.keyPrefix ?? '';
    const match = escapeGlob(clientPrefix + this.prefix) + pattern;
    let cursor = '0';
    let removed = 0;
    do {
      const page = await this.#run(
        'scan',
        () => this.#redis.scan(cursor, 'MATCH', match, 'COUNT', this.#scanCount),
        undefined,
      );
      if (!page) return { removed, complete: false };
      const [next, keys] = page;
      cursor = next;
      if (keys.length > 0) {
        const names = keys.map((k) => k.slice(clientPrefix.length));
        const count = await this.#run('unlink', () => this.#redis.unlink(...names), undefined);
        if (count === undefined) return { removed, complete: false };
        removed += count;
      }
    } while (cursor !== '0');
    return { removed, complete: true };
  }

  async health(): Promise<CacheHealth> {
    const status = this.#redis.status;
    if (DISCONNECTED.has(status) || CONNECTING.has(status)) {
      return { store: 'redis', up: false, error: this.#lastError ?? `redis connection is ${status}` };
    }
    const started = performance.now();
    const outcome = await this.#attempt(this.#redis.ping());
    const latencyMs = Math.round((performance.now() - started) * 10) / 10;
    if (outcome.ok) {
      this.#markUp();
      return { store: 'redis', up: true, latencyMs };
    }
    if (!isReplyError(outcome.error)) this.#markDown('ping', outcome.error);
    return { store: 'redis', up: false, latencyMs, error: messageOf(outcome.error) };
  }

  /** Runs one command within the time budget; any failure becomes `fallback`, never an exception. */
  async #run<T, F>(op: string, command: () => Promise<T>, fallback: F): Promise<T | F> {
    const status = this.#redis.status;
    if (DISCONNECTED.has(status)) {
      this.#markDown(op, new Error(`redis connection is ${status}`));
      return fallback;
    }
    if (CONNECTING.has(status)) return fallback;
    // Down, and a probe is already asking: don't make this caller wait too.
    if (!this.#up && this.#probing) return fallback;

    let pending: Promise<T>;
    try {
      pending = command();
    } catch (err) {
      this.#markDown(op, err);
      return fallback;
    }
    if (!this.#up) this.#trackProbe(pending);
    const outcome = await this.#attempt(pending);
    if (outcome.ok) {
      this.#markUp();
      return outcome.value;
    }
    if (isReplyError(outcome.error)) {
      // Redis answered with an error (out of memory under noeviction, …): reachable, just refusing.
      const now = Date.now();
      if (now - this.#replyErrorLoggedAt > 60_000) {
        this.#replyErrorLoggedAt = now;
        this.#logger.warn({ err: outcome.error, op }, 'cache: redis refused a command');
      }
      return fallback;
    }
    this.#markDown(op, outcome.error);
    // The command that timed out is still queued in Redis: it is the probe that tells us when it is back.
    if (outcome.timedOut && !this.#probing) this.#trackProbe(pending);
    return fallback;
  }

  #attempt<T>(pending: Promise<T>): Promise<Outcome<T>> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () =>
          resolve({
            ok: false,
            timedOut: true,
            error: new Error(`redis did not answer within ${this.#timeoutMs} ms`),
          }),
        this.#timeoutMs,
      );
      pending.then(
        (value) => {
          clearTimeout(timer);
          resolve({ ok: true, value });
        },
        (error: unknown) => {
          clearTimeout(timer);
          resolve({ ok: false, error, timedOut: false });
        },
      );
    });
  }

  #trackProbe(pending: Promise<unknown>) {
    const id = ++this.#probeSeq;
    this.#probing = id;
    const release = () => {
      clearTimeout(timer);
      if (this.#probing === id) this.#probing = 0;
    };
    const timer = setTimeout(release, this.#probeWindowMs);
    timer.unref();
    pending.then(() => {
      release();
      this.#markUp();
    }, release);
  }

  #markDown(op: string, err: unknown) {
    this.#lastError = messageOf(err);
    if (!this.#up) return;
    this.#up = false;
    this.#logger.warn(
      { err, op, prefix: this.prefix },
      'cache: redis unavailable; serving cache misses until it is back',
    );
  }

  #markUp() {
    this.#lastError = undefined;
    if (this.#up) return;
    this.#up = true;
    this.#logger.info({ prefix: this.prefix }, 'cache: redis reachable again');
  }
}

function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
