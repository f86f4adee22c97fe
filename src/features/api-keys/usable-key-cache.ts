import type { Redis } from 'ioredis';
import { subscribeToAnnouncements } from '../../core/announcements.js';
import type { Logger } from '../../core/logger.js';
import type { KeyOwner } from './store.js';

export interface UsableKeyCacheOptions {
  /** How long an answer is reused; also how long another replica may still accept a key revoked while the
   * invalidation channel was down (default 2 s). */
  ttlMs?: number;
  /** Keys remembered at most (least recently used dropped first). */
  maxEntries?: number;
  /** With Redis, revocations are announced to every replica at once. */
  redis?: Redis | undefined;
  logger?: Logger | undefined;
  /** Pub/sub channel (tests use a unique one). */
  channel?: string;
}

interface Entry {
  owner: KeyOwner;
  expiresAt: number;
}

const DEFAULT_TTL_MS = 2_000;
const DEFAULT_MAX_ENTRIES = 10_000;

/**
 * Remembers, for a couple of seconds, who owns each API key that authenticated, so a busy key costs one
 * database read per TTL instead of one per request. Revoking a key or disabling its owner forgets it here at
 * once and, through Redis pub/sub, on every other replica; if that message is lost (Redis down), the TTL
 * bounds how long another replica may still accept it.
 */
export class UsableKeyCache {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>();
  /** Loads in flight, shared by concurrent requests with the same key. */
  readonly #loading = new Map<string, Promise<KeyOwner | undefined>>();
  /** Bumped by every invalidation: a load that started before one must not store what it read. */
  #generation = 0;
  readonly #redis: Redis | undefined;
  readonly #subscriber: Redis | undefined;
  readonly #channel: string;
  readonly #logger: Logger | undefined;
  readonly #listeners: ((kind: 'key' | 'user', id: string) => void)[] = [];

  constructor(options: UsableKeyCacheOptions = {}) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.#channel = options.channel ?? 'colloquy:api-keys:invalidate';
    this.#logger = options.logger;
    this.#redis = options.redis;
    if (this.#redis)
      this.#subscriber = subscribeToAnnouncements(this.#redis, this.#channel, {
        onSubscribed: () => this.#forgetAll(),
        onMessage: (message) => this.#apply(message),
        what: 'API key revocations',
        logger: this.#logger,
      });
  }

  /** The cached owner of the key with this hash, if any is fresh: the hot path, without a promise. */
  peek(hash: string): KeyOwner | undefined {
    const entry = this.#entries.get(hash);
    if (entry === undefined) return undefined;
    if (entry.expiresAt > Date.now()) return entry.owner;
    this.#entries.delete(hash);
    return undefined;
  }

  /** The owner of the key with this hash, from the cache or from `load` (which reads the database). */
  get(hash: string, load: () => Promise<KeyOwner | undefined>): Promise<KeyOwner | undefined> {
    const now = Date.now();
    const entry = this.#entries.get(hash);
    if (entry) {
      if (entry.expiresAt > now) return Promise.resolve(entry.owner);
      this.#entries.delete(hash);
    }
    const pending = this.#loading.get(hash);
    if (pending) return pending;
    const generation = this.#generation;
    const loading: Promise<KeyOwner | undefined> = load().then(
      (owner) => {
        if (this.#loading.get(hash) === loading) this.#loading.delete(hash);
        // Unknown or unusable keys are not remembered: only a usable key's owner is worth keeping.
        if (owner && generation === this.#generation) this.#store(hash, owner, Date.now());
        return owner;
      },
      (err: unknown) => {
        if (this.#loading.get(hash) === loading) this.#loading.delete(hash);
        throw err;
      },
    );
    this.#loading.set(hash, loading);
    return loading;
  }

  #store(hash: string, owner: KeyOwner, now: number) {
    if (this.#entries.size >= this.#maxEntries) {
      // Map order is insertion order: the first entry is the oldest.
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    // A key that expires within the TTL is kept only until it expires.
    const keyExpiry = owner.expiresAt ? Date.parse(owner.expiresAt) : Number.POSITIVE_INFINITY;
    this.#entries.set(hash, { owner, expiresAt: Math.min(now + this.#ttlMs, keyExpiry) });
  }

  /** Forgets a key (revoked) here and on every replica. */
  forgetKey(keyId: string): Promise<void> {
    return this.#announce(`key:${keyId}`);
  }

  /** Forgets every key of a user (disabled, role changed) here and on every replica. */
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
        `other replicas keep accepting the key for up to ${this.#ttlMs} ms: could not announce`,
      );
    }
  }

  /**
   * Told of every invalidation applied here, this replica's and (through Redis) every other's: streams held
   * open by a revoked key or a disabled user are ended from it (CredentialWatch).
   */
  onForget(listener: (kind: 'key' | 'user', id: string) => void): void {
    this.#listeners.push(listener);
  }

  #apply(message: string) {
    this.#generation++;
    // Requests arriving from now on must not join a read that started before the change.
    this.#loading.clear();
    const separator = message.indexOf(':');
    const kind = message.slice(0, separator);
    const id = message.slice(separator + 1);
    for (const [hash, { owner }] of this.#entries) {
      if ((kind === 'key' && owner.keyId === id) || (kind === 'user' && owner.userId === id))
        this.#entries.delete(hash);
    }
    if (kind === 'key' || kind === 'user') for (const listener of this.#listeners) listener(kind, id);
  }

  #forgetAll() {
    this.#generation++;
    this.#loading.clear();
    this.#entries.clear();
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#subscriber?.disconnect();
  }
}
