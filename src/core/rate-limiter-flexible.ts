import { createRequire } from 'node:module';
import type * as Flexible from 'rate-limiter-flexible';

/*
 * rate-limiter-flexible's index loads every store it supports (Mongo, MySQL, DynamoDB, Prisma, etcd, …):
 * ~1.2 MiB of heap for the lifetime of the process. Colloquy keeps counters in memory or Redis, so it loads
 * only those files; the types come from the package's own declarations.
 */
const require = createRequire(import.meta.url);
export const RateLimiterMemory =
  require('rate-limiter-flexible/lib/RateLimiterMemory.js') as typeof Flexible.RateLimiterMemory;
export const RateLimiterRedis =
  require('rate-limiter-flexible/lib/RateLimiterRedis.js') as typeof Flexible.RateLimiterRedis;
export const RateLimiterRes =
  require('rate-limiter-flexible/lib/RateLimiterRes.js') as typeof Flexible.RateLimiterRes;
export type RateLimiterRes = Flexible.RateLimiterRes;
export type RateLimiterAbstract = Flexible.RateLimiterAbstract;
