import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../../core/logger.js';

export interface GenerationLeasesOptions {
  prefix?: string;
  /** How long a lease outlives its last refresh: a replica dead this long lets others finish its generations. */
  ttlMs?: number;
  /** How often the running generations' leases are refreshed (one pipeline for all of them). */
  refreshMs?: number;
}

export const DEFAULT_LEASE_TTL_MS = 3_000;
/** A generation's ticket outlives any budget reservation it names (those expire after 15 minutes). */
const TICKET_TTL_MS = 3_600_000;

/**
 * What a replica taking over a dead one's generation needs and the database does not hold: who it ran
 * for, its prompt's estimated size, and its budget reservation (to settle, see takeover.ts).
 */
export interface GenerationTicket {
  apiKeyId: string | null;
  model: string;
  promptTokens: number;
  /** The gateway's admission ticket (the budget reservation in the shared counters), if any. */
  admission?: unknown;
}

/**
 * A lease per running generation in Redis (`colloquy:gen:{id}:lease`, the replica's id, PX ttl), refreshed
 * every second by the replica that runs it. A replica killed mid-generation stops refreshing, its leases
 * expire within ttlMs, and any replica may then finish its generations (takeover.ts): cancel, a new message
 * and readers no longer wait for the orphan sweep. The lease is SET (not PEXPIREd) on each refresh, so a
 * Redis restart that lost it has it back within a refresh.
 */
export class GenerationLeases {
  readonly owner = randomUUID();
  readonly ttlMs: number;
  readonly #prefix: string;
  readonly #held = new Set<string>();
  readonly #timer: NodeJS.Timeout;
  #failing = false;

  constructor(
    private readonly redis: Redis,
    private readonly logger: Logger,
    options: GenerationLeasesOptions = {},
  ) {
    this.#prefix = options.prefix ?? 'colloquy:';
    this.ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.#timer = setInterval(() => void this.#refresh(), options.refreshMs ?? 1_000);
    this.#timer.unref();
  }

  key(generationId: string): string {
    return `${this.#prefix}gen:${generationId}:lease`;
  }

  ticketKey(generationId: string): string {
    return `${this.#prefix}gen:${generationId}:ticket`;
  }

  /** Takes the lease of a generation starting here, and stores its ticket for whoever may take it over. */
  hold(generationId: string, ticket?: GenerationTicket): void {
    this.#held.add(generationId);
    const multi = this.redis.multi().set(this.key(generationId), this.owner, 'PX', this.ttlMs);
    if (ticket) multi.set(this.ticketKey(generationId), JSON.stringify(ticket), 'PX', TICKET_TTL_MS);
    multi.exec().catch((err) => this.#warn(err));
  }

  /** Gives the lease (and the ticket) up once the generation is saved. */
  release(generationId: string): void {
    if (!this.#held.delete(generationId)) return;
    this.redis.del(this.key(generationId), this.ticketKey(generationId)).catch((err) => this.#warn(err));
  }

  /** The replica (its `owner` id) holding the generation's lease, or null when none does. Throws without Redis. */
  async ownerOf(generationId: string): Promise<string | null> {
    return this.redis.get(this.key(generationId));
  }

  /** Takes a dead replica's ticket for a generation (once: whoever finishes it settles it). */
  async takeTicket(generationId: string): Promise<GenerationTicket | null> {
    const raw = await this.redis.getdel(this.ticketKey(generationId));
    if (!raw) return null;
    try {
      return JSON.parse(raw) as GenerationTicket;
    } catch {
      return null;
    }
  }

  /** True when nobody holds the generation's lease; throws when Redis cannot say (then nobody takes over). */
  async isAbandoned(generationId: string): Promise<boolean> {
    return (await this.redis.exists(this.key(generationId))) === 0;
  }

  /** Of these generations, those nobody holds a lease for (one round trip for all of them). */
  async abandonedOf(generationIds: string[]): Promise<string[]> {
    if (generationIds.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of generationIds) pipeline.exists(this.key(id));
    const replies = (await pipeline.exec()) ?? [];
    return generationIds.filter((_, i) => {
      const [err, exists] = replies[i] ?? [new Error('no reply'), 1];
      return !err && exists === 0;
    });
  }

  async #refresh() {
    if (this.#held.size === 0) return;
    const pipeline = this.redis.pipeline();
    for (const id of this.#held) pipeline.set(this.key(id), this.owner, 'PX', this.ttlMs);
    try {
      await pipeline.exec();
      this.#failing = false;
    } catch (err) {
      this.#warn(err);
    }
  }

  #warn(err: unknown) {
    if (!this.#failing) this.logger.warn({ err }, 'could not refresh generation leases in redis');
    this.#failing = true;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#held.clear();
  }
}
