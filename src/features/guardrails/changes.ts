import type { Redis } from 'ioredis';
import { subscribeToAnnouncements } from '../../core/announcements.js';
import type { Logger } from '../../core/logger.js';

/**
 * Tells every replica that the stored guardrails changed, so each reloads them at once (issue 22: a change
 * binds every replica within a second). The same design as the limits' invalidations
 * (src/features/limits/invalidations.ts): applied here synchronously, then published; after the subscription
 * comes back from an outage, listeners are told anyway (a message may have been lost), and the store's
 * periodic reload bounds what is left.
 */
export class GuardrailChanges {
  readonly #listeners = new Set<() => void>();
  readonly #subscriber: Redis | undefined;

  constructor(
    private readonly options: {
      redis?: Redis | undefined;
      logger?: Logger | undefined;
      channel?: string;
    } = {},
  ) {
    // Once subscribed, listeners are told (at start-up too: a change may have come between the first load and
    // the subscription, as in a replica started under load).
    if (options.redis)
      this.#subscriber = subscribeToAnnouncements(options.redis, this.channel, {
        onSubscribed: () => this.#emit(),
        onMessage: () => this.#emit(),
        what: 'guardrail changes',
        logger: options.logger,
      });
  }

  get channel() {
    return this.options.channel ?? 'colloquy:guardrails:changed';
  }

  onChange(listener: () => void) {
    this.#listeners.add(listener);
  }

  /**
   * Tells the other replicas (this one has applied the change already; its own subscriber hears it too, and
   * one more reload is harmless). Never throws: a lost message is logged, the periodic reload catches up.
   */
  async announce(): Promise<void> {
    if (!this.options.redis) return;
    try {
      await this.options.redis.publish(this.channel, String(Date.now()));
    } catch (err) {
      this.options.logger?.warn({ err }, 'could not announce a guardrail change to replicas');
    }
  }

  #emit() {
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (err) {
        this.options.logger?.warn({ err }, 'a guardrail listener failed');
      }
    }
  }

  close() {
    this.#subscriber?.disconnect();
    this.#listeners.clear();
  }
}
