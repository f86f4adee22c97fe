import type { Redis } from 'ioredis';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { AppError } from '../../core/errors.js';

export interface LoginThrottleOptions {
  maxFailures: number;
  windowSeconds: number;
  redis?: Redis | undefined;
}

/**
 * Counts failed logins per (account, client address) and per address. Unknown and known accounts are
 * counted alike, so the throttle reveals nothing about which emails exist. With Redis the counts are
 * shared by every replica.
 */
export class LoginThrottle {
  readonly #perAccount: RateLimiterAbstract;
  readonly #perAddress: RateLimiterAbstract;

  constructor(private readonly options: LoginThrottleOptions) {
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

  /** Throws 429 when this account/address pair or this address has failed too often. */
  async assertAllowed(email: string, ip: string): Promise<void> {
    const [account, address] = await Promise.all([
      this.#perAccount.get(`${email}|${ip}`),
      this.#perAddress.get(ip),
    ]);
    const blocked = [
      account && account.consumedPoints >= this.options.maxFailures ? account.msBeforeNext : 0,
      address && address.consumedPoints >= this.options.maxFailures * 10 ? address.msBeforeNext : 0,
    ];
    const waitMs = Math.max(...blocked);
    if (waitMs > 0) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000));
      throw new AppError('too_many_login_attempts', `too many failed logins; try again in ${retryAfter} s`, {
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  }

  async recordFailure(email: string, ip: string): Promise<void> {
    await Promise.all([this.#perAccount.penalty(`${email}|${ip}`, 1), this.#perAddress.penalty(ip, 1)]);
  }

  async recordSuccess(email: string, ip: string): Promise<void> {
    await this.#perAccount.delete(`${email}|${ip}`);
  }
}
