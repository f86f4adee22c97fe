import type { Redis } from 'ioredis';
import { AppError } from '../../core/errors.js';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from '../../core/rate-limiter-flexible.js';

export interface LoginThrottleOptions {
  maxFailures: number;
  windowSeconds: number;
  redis?: Redis | undefined;
}

/**
 * Counts failed logins per (account, client address) and per address. Unknown and known accounts are
 * counted alike, so the throttle reveals nothing about which emails exist. With Redis the counts are
 * shared by every replica. Each attempt is counted before its password is checked and refunded when it
 * succeeds, so parallel guesses cannot all slip past the limit.
 */
export class LoginThrottle {
  readonly #perAccount: RateLimiterAbstract;
  readonly #perAddress: RateLimiterAbstract;

  constructor(options: LoginThrottleOptions) {
    const make = (keyPrefix: string, points: number) =>
      options.redis
        ? new RateLimiterRedis({
            storeClient: options.redis,
            useRedisPackage: false,
            keyPrefix,
            points,
            duration: options.windowSeconds,
            // A Redis outage must not lock everyone out of logging in: fall back to this process' counts.
            insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: options.windowSeconds }),
          })
        : new RateLimiterMemory({ keyPrefix, points, duration: options.windowSeconds });
    this.#perAccount = make('login_fail_account', options.maxFailures);
    this.#perAddress = make('login_fail_ip', options.maxFailures * 10);
  }

  /**
   * Claims one attempt for this account/address pair and this address (atomically, in the store) before
   * the password is checked; throws 429 when this pair or this address has failed too often.
   */
  async assertAllowed(email: string, ip: string): Promise<void> {
    const account = `${email}|${ip}`;
    const results = await Promise.allSettled([
      this.#perAccount.consume(account, 1),
      this.#perAddress.consume(ip, 1),
    ]);
    let blocked = false;
    let waitMs = 0;
    for (const result of results) {
      if (result.status === 'fulfilled') continue;
      if (!(result.reason instanceof RateLimiterRes)) throw result.reason;
      blocked = true;
      waitMs = Math.max(waitMs, result.reason.msBeforeNext);
    }
    if (blocked) {
      // A refused attempt checks no password, so it is given back: retrying while blocked costs nothing more.
      await Promise.all([this.#perAccount.reward(account, 1), this.#perAddress.reward(ip, 1)]);
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new AppError('too_many_login_attempts', `too many failed logins; try again in ${retryAfter} s`, {
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  }

  /** A failed attempt stays counted; a successful one clears the pair and is refunded to the address. */
  async recordSuccess(email: string, ip: string): Promise<void> {
    await Promise.all([this.#perAccount.delete(`${email}|${ip}`), this.#perAddress.reward(ip, 1)]);
  }
}
