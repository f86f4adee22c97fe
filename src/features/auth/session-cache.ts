import type { Redis } from 'ioredis';
import { subscribeToAnnouncements } from '../../core/announcements.js';
import type { Logger } from '../../core/logger.js';

export interface SessionCacheOptions {
  /**
   * How long "this session is still signed in" is reused (default 1 s): also how long another replica may
   * still accept an access token of a session signed out while the invalidation channel was down.
   */
  ttlMs?: number;
  /** Sessions remembered at most (oldest dropped first). */
  maxEntries?: number;
  /** With Redis, sign-outs are announced to every replica at once. */
  redis?: Redis | undefined;
  logger?: Logger | undefined;
  /** Pub/sub channel (tests use a unique one). */
  channel?: string;
}

interface Entry {
  userId: string;
  active: boolean;
  /** A signed-out session never comes back, so its answer is kept until evicted. */
  expiresAt: number;
}

const DEFAULT_TTL_MS = 1_000;
const DEFAULT_MAX_ENTRIES = 10_000;

/**
 * Whether a login session (a refresh-token family, the `sid` of its access tokens) is still signed in, so an
 * access token stops working at logout instead of at its expiry (issue 19). A busy session costs one indexed
 * read per TTL per replica; signing out forgets the session here at once and, through Redis pub/sub, on every
 * other replica; if that message is lost, the TTL bounds how long another replica may still accept it.
 */
export class SessionCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  /** Bumped by every invalidation: a read that started before one must not store what it read. */
  #generation = 0;
  readonly #redis: Redis | undefined;
  readonly #subscriber: Redis | undefined;
  readonly #channel: string;
  readonly #logger: Logger | undefined;

  constructor(options: SessionCacheOptions = {}) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#channel = options.channel ?? 'colloquy:sessions:invalidate';
    this.#logger = options.logger;
    this.#redis = options.redis;
    if (this.#redis)
      this.#subscriber = subscribeToAnnouncements(this.#redis, this.#channel, {
        onSubscribed: () => this.#forgetAll(),
        onMessage: (message) => this.#apply(message),
        what: 'session sign-outs',
        logger: this.#logger,
      });
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** Whether the session is signed in, from the cache or from `load` (which reads the database). */
  async isActive(sessionId: string, userId: string, load: () => Promise<boolean>): Promise<boolean> {
    const now = Date.now();
    const entry = this.#entries.get(sessionId);
    if (entry && entry.expiresAt > now) return entry.active;
    const generation = this.#generation;
    const active = await load();
    if (generation === this.#generation) {
      this.#entries.delete(sessionId);
      if (this.#entries.size >= this.#maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
      this.#entries.set(sessionId, {
        userId,
        active,
        expiresAt: active ? Date.now() + this.#ttlMs : Number.POSITIVE_INFINITY,
      });
    }
    return active;
  }

  /** A session was signed out: forgotten here and on every replica. */
  forgetSession(sessionId: string): Promise<void> {
    return this.#announce(`session:${sessionId}`);
  }

  /** Every session of a user may have been signed out (new password, disabled): forgotten everywhere. */
  forgetUser(userId: string): Promise<void> {
    return this.#announce(`user:${userId}`);
  }

  async #announce(message: string) {
    this.#apply(message);
    if (!this.#redis) return;
    try {
      await this.#redis.publish(this.#channel, message);
    } catch (err) {
      this.#logger?.warn(
        { err },
        `other replicas keep accepting the session's access tokens for up to ${this.#ttlMs} ms: could not announce`,
      );
    }
  }

  #apply(message: string) {
    this.#generation++;
    const separator = message.indexOf(':');
    const kind = message.slice(0, separator);
    const id = message.slice(separator + 1);
    if (kind === 'session') this.#entries.delete(id);
    else if (kind === 'user')
      for (const [sessionId, entry] of this.#entries)
        if (entry.userId === id) this.#entries.delete(sessionId);
  }

  #forgetAll() {
    this.#generation++;
    this.#entries.clear();
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#subscriber?.disconnect();
  }
}
