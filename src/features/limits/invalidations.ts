import type { Redis } from 'ioredis';
import { subscribeToAnnouncements } from '../../core/announcements.js';
import type { Logger } from '../../core/logger.js';
import type { LimitScope } from './tables.js';

/** What changed: a subject's budgets or its rate-limit overrides. */
export type LimitSetting = 'budgets' | 'overrides';
export type InvalidationListener = (setting: LimitSetting, scope: LimitScope, subjectId: string) => void;

export interface LimitInvalidationsOptions {
  /** With Redis, a change is announced to every replica at once; without it only this process caches. */
  redis?: Redis | undefined;
  logger?: Logger | undefined;
  /** Pub/sub channel (tests use a unique one). */
  channel?: string;
}

/**
 * Announces changes to budgets and limit overrides so every replica drops its cached copy at once (issue 19,
 * item 2: a 30 s per-replica cache let another replica serve, and not charge, requests past a new budget).
 * Same design as the API key revocations (src/features/api-keys/usable-key-cache.ts): the change applies
 * here synchronously, then is published. While the subscription is down a message can be lost, so every
 * listener is also told "everything" when it comes back (`subjectId` '*'), and the stores' short TTL bounds
 * what is left.
 */
export class LimitInvalidations {
  readonly #listeners = new Set<InvalidationListener>();
  readonly #redis: Redis | undefined;
  readonly #subscriber: Redis | undefined;
  readonly #channel: string;
  readonly #logger: Logger | undefined;

  constructor(options: LimitInvalidationsOptions = {}) {
    this.#redis = options.redis;
    this.#logger = options.logger;
    this.#channel = options.channel ?? 'colloquy:limits:invalidate';
    if (this.#redis)
      this.#subscriber = subscribeToAnnouncements(this.#redis, this.#channel, {
        // Once subscribed, every cached setting is dropped.
        onSubscribed: () => {
          for (const scope of ['key', 'user'] as const) this.#emitAll(scope);
        },
        onMessage: (message) => this.#apply(message),
        what: 'budget and limit changes',
        logger: this.#logger,
      });
  }

  #emitAll(scope: LimitScope) {
    for (const setting of ['budgets', 'overrides'] as const) this.#emit(setting, scope, '*');
  }

  /** Called for every change, made here or on another replica ('*': any subject may have changed). */
  onChange(listener: InvalidationListener): void {
    this.#listeners.add(listener);
  }

  /** Applies the change here, then tells every other replica. Never throws (a lost message is logged). */
  async announce(setting: LimitSetting, scope: LimitScope, subjectId: string): Promise<void> {
    const message = JSON.stringify([setting, scope, subjectId]);
    this.#apply(message);
    if (!this.#redis) return;
    try {
      await this.#redis.publish(this.#channel, message);
    } catch (err) {
      this.#logger?.warn({ err, setting, scope }, 'could not announce a budget or limit change to replicas');
    }
  }

  #apply(message: string) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (!Array.isArray(parsed) || parsed.length !== 3) return;
    const [setting, scope, subjectId] = parsed as [LimitSetting, LimitScope, string];
    if ((setting !== 'budgets' && setting !== 'overrides') || (scope !== 'key' && scope !== 'user')) return;
    this.#emit(setting, scope, String(subjectId));
  }

  #emit(setting: LimitSetting, scope: LimitScope, subjectId: string) {
    for (const listener of this.#listeners) {
      try {
        listener(setting, scope, subjectId);
      } catch (err) {
        this.#logger?.warn({ err }, 'a budget or limit cache could not apply a change');
      }
    }
  }

  close(): void {
    this.#subscriber?.disconnect();
    this.#listeners.clear();
  }
}
