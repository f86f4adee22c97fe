import type { Redis } from 'ioredis';
import type { Logger } from '../../core/logger.js';
import { type GenerationEvent, type GenerationEventType, isFinalEvent } from './events.js';

export interface RedisEventLogOptions {
  prefix?: string;
  /** Entries kept per generation stream (approximate trimming). */
  maxLen?: number;
  /** Seconds a generation's stream lives after its last event. */
  ttlSeconds?: number;
  /** How long one XREAD blocks before the reader checks the database for an ended generation. */
  blockMs?: number;
}

/**
 * Generation events shared across replicas through Redis:
 *  - `colloquy:gen:{id}:events` — a Stream per generation; entry ids are `0-{event number}`, so reading
 *    "after Last-Event-ID n" is XREAD from `0-n`. Trimmed with MAXLEN ~, expires ttlSeconds after the
 *    last event.
 *  - `colloquy:generations:cancel` — a pub/sub channel: a cancel reaching a replica that does not run the
 *    generation is published there, and the replica running it stops it.
 *  - `colloquy:generations:cancel:{owner}` — the same, for the one replica whose lease owner id it names:
 *    PUBLISH counts its receivers, so 0 says that replica is gone (see takeover.ts, cancelElsewhere).
 */
export class RedisEventLog {
  readonly #prefix: string;
  readonly #maxLen: number;
  readonly #ttlSeconds: number;
  readonly #blockMs: number;
  #failing = false;
  #subscriber: Redis | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    options: RedisEventLogOptions = {},
  ) {
    this.#prefix = options.prefix ?? 'colloquy:';
    this.#maxLen = options.maxLen ?? 50_000;
    this.#ttlSeconds = options.ttlSeconds ?? 3600;
    this.#blockMs = options.blockMs ?? 2_000;
  }

  streamKey(generationId: string): string {
    return `${this.#prefix}gen:${generationId}:events`;
  }

  get cancelChannel(): string {
    return `${this.#prefix}generations:cancel`;
  }

  /** Appends one event. Never throws: a Redis outage only costs cross-replica reconnection. */
  async publish(generationId: string, event: GenerationEvent): Promise<void> {
    const key = this.streamKey(generationId);
    // The expiry is (re)set on the first and last events and now and then between, not on every delta.
    const touch = event.id === 1 || isFinalEvent(event) || event.id % 100 === 0;
    try {
      const multi = this.redis
        .multi()
        .xadd(
          key,
          'MAXLEN',
          '~',
          this.#maxLen,
          `0-${event.id}`,
          'type',
          event.type,
          'data',
          JSON.stringify(event.data),
        );
      if (touch) multi.expire(key, this.#ttlSeconds);
      await multi.exec();
      if (this.#failing) this.logger.info('generation events reach redis again');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing)
        this.logger.warn({ err, generationId }, 'could not publish generation events to redis');
      this.#failing = true;
    }
  }

  /**
   * Events after `after`, then new ones as they arrive, until the final event. While nothing arrives,
   * `endedElsewhere` is asked whether the generation ended without its final event reaching Redis (its
   * replica died and it was swept): its answer, if any, is the last event.
   */
  async *read(
    generationId: string,
    after: number,
    signal: AbortSignal,
    endedElsewhere: (after: number) => Promise<GenerationEvent | null | 'ended'>,
  ): AsyncGenerator<GenerationEvent> {
    const key = this.streamKey(generationId);
    // A blocking read holds its connection, so each reader has its own, closed when it stops.
    const connection = this.redis.duplicate({
      enableOfflineQueue: true,
      commandTimeout: this.#blockMs + 5_000,
    });
    connection.on('error', () => {});
    const stop = () => connection.disconnect();
    signal.addEventListener('abort', stop, { once: true });
    let last = after;
    try {
      while (!signal.aborted) {
        let reply: [string, [string, string[]][]][] | null;
        try {
          reply = (await connection.xread(
            'COUNT',
            1000,
            'BLOCK',
            this.#blockMs,
            'STREAMS',
            key,
            `0-${last}`,
          )) as [string, [string, string[]][]][] | null;
        } catch (err) {
          if (signal.aborted) return;
          throw err;
        }
        const entries = reply?.[0]?.[1] ?? [];
        for (const [entryId, fields] of entries) {
          const event = parseEntry(entryId, fields);
          if (!event) continue;
          last = event.id;
          yield event;
          if (isFinalEvent(event)) return;
        }
        if (entries.length === 0 && !signal.aborted) {
          const ended = await endedElsewhere(last);
          if (ended === 'ended') return;
          if (ended) {
            yield ended;
            return;
          }
        }
      }
    } finally {
      signal.removeEventListener('abort', stop);
      connection.disconnect();
    }
  }

  /** Every event of a generation's log, in order (a replica taking over a dead one's generation reads it). */
  async readAll(generationId: string): Promise<GenerationEvent[]> {
    const entries = (await this.redis.xrange(this.streamKey(generationId), '-', '+')) as [string, string[]][];
    return entries.flatMap(([entryId, fields]) => parseEntry(entryId, fields) ?? []);
  }

  async requestCancel(generationId: string): Promise<boolean> {
    try {
      return (await this.redis.publish(this.cancelChannel, generationId)) > 0;
    } catch (err) {
      this.logger.warn({ err, generationId }, 'could not publish a cancel request to redis');
      return false;
    }
  }

  ownerChannel(owner: string): string {
    return `${this.cancelChannel}:${owner}`;
  }

  /** Asks the replica `owner` to stop a generation: how many processes heard it (0: that replica is gone). */
  async requestCancelOf(owner: string, generationId: string): Promise<number> {
    return this.redis.publish(this.ownerChannel(owner), generationId);
  }

  /** Listens for cancel requests from other replicas (also on the channel of this replica's lease owner id). */
  onCancelRequest(handler: (generationId: string) => void, owner?: string): void {
    const subscriber = this.redis.duplicate({ enableOfflineQueue: true });
    subscriber.on('error', () => {});
    const channels = [this.cancelChannel, ...(owner ? [this.ownerChannel(owner)] : [])];
    subscriber.on('message', (channel: string, message: string) => {
      if (channels.includes(channel)) handler(message);
    });
    subscriber.subscribe(...channels).catch((err: unknown) => {
      this.logger.warn({ err }, 'could not subscribe to generation cancel requests');
    });
    this.#subscriber = subscriber;
  }

  close(): void {
    this.#subscriber?.disconnect();
    this.#subscriber = undefined;
  }
}

function parseEntry(entryId: string, fields: string[]): GenerationEvent | null {
  const id = Number(entryId.split('-')[1]);
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const type = map.get('type') as GenerationEventType | undefined;
  const data = map.get('data');
  if (!Number.isFinite(id) || !type || data === undefined) return null;
  try {
    return { id, type, data: JSON.parse(data) as Record<string, unknown> };
  } catch {
    return null;
  }
}
