import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/**
 * A client that fails fast while Redis is away (no offline queue, bounded retries per command) and keeps
 * reconnecting in the background, so a Redis outage degrades requests instead of hanging them.
 */
export function createRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 1_000,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  });
  let down = false;
  // Logged once per outage: on the first failed command or lost connection, not on every reconnect attempt.
  const markDown = (err?: Error) => {
    if (!down) logger.warn({ err }, 'redis unavailable; retrying in the background');
    down = true;
  };
  redis.on('error', markDown);
  redis.on('reconnecting', () => markDown());
  redis.on('ready', () => {
    if (down) logger.info('redis connection restored');
    down = false;
  });
  return redis;
}

/**
 * Waits (bounded) for the first connection: with no offline queue, commands sent before it fail at once.
 * Resolves false when Redis did not answer in time; the client keeps trying in the background.
 */
export async function waitForRedis(redis: Redis, timeoutMs = 5_000): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}
