import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';

// Apart from core/redis.ts (the client, imported by server.ts only when REDIS_URL is set), so a server without
// Redis never loads ioredis: the features that listen for announcements take the client they are given.

/**
 * A second connection subscribed to one announcement channel (a subscribed connection can do nothing else).
 * Without an offline queue a subscribe sent before the connection is ready fails, so it is (re)sent on every
 * ready; `onSubscribed` runs each time it holds (at start-up too), since whatever was cached before may have
 * missed an announcement made meanwhile. Outages are logged by the main client: while this one is down the
 * caller's TTL or reload bounds staleness.
 */
export function subscribeToAnnouncements(
  redis: Redis,
  channel: string,
  handlers: {
    onSubscribed: () => void;
    onMessage: (message: string) => void;
    /** What the channel announces, for the warning when subscribing fails. */
    what: string;
    logger?: Logger | undefined;
  },
): Redis {
  const subscriber = redis.duplicate({ autoResubscribe: false });
  subscriber.on('ready', () => {
    subscriber
      .subscribe(channel)
      .then(handlers.onSubscribed)
      .catch((err) => handlers.logger?.warn({ err }, `could not subscribe to ${handlers.what}`));
  });
  subscriber.on('error', () => {});
  subscriber.on('message', (_channel: string, message: string) => handlers.onMessage(message));
  return subscriber;
}
