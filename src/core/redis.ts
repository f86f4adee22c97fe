import { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/** Commands (and the watchdog's ping) waiting longer than this fail. */
const COMMAND_TIMEOUT_MS = 1_000;
const WATCHDOG_INTERVAL_MS = 1_000;

/**
 * A client that fails fast while Redis is away (no offline queue, bounded retries per command, a command
 * timeout) and keeps reconnecting in the background, so a Redis outage degrades requests instead of hanging
 * them.
 */
export function createRedis(url: string, logger: Logger): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: COMMAND_TIMEOUT_MS,
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
  watchForStalls(redis, markDown);
  return redis;
}

/**
 * A Redis that stalls (paused, swapping, a network path dropping packets) keeps the connection open, so the
 * command timeout alone would make every request wait for it, on every command, for the whole outage. A
 * ping that does not come back in time drops the connection instead: until the client is ready again,
 * commands fail at once (no offline queue) and callers take their fallbacks (fail-open limits, cache misses).
 */
function watchForStalls(redis: Redis, markDown: (err: Error) => void) {
  let pinging = false;
  const watchdog = setInterval(() => {
    if (pinging || redis.status !== 'ready') return;
    pinging = true;
    redis
      .ping()
      .catch((err: Error) => {
        if (redis.status !== 'ready' || !/timed out/i.test(err.message)) return;
        markDown(err);
        // Not disconnect(): a graceful close waits for the stalled server's answer to it. Cut the connection;
        // the client reconnects as after any lost connection.
        redis.stream.destroy();
      })
      .finally(() => {
        pinging = false;
      });
  }, WATCHDOG_INTERVAL_MS);
  watchdog.unref();
  redis.once('end', () => clearInterval(watchdog));
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
