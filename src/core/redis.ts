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
  redis.on('error', (err) => {
    // Logged once per outage, not once per reconnect attempt.
    if (!down) logger.warn({ err }, 'redis unavailable; retrying in the background');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.info('redis connection restored');
    down = false;
  });
  return redis;
}
