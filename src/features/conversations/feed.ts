import { setTimeout as sleep } from 'node:timers/promises';
import { type GenerationEvent, isFinalEvent } from './events.js';
import type { GenerationManager } from './generation-manager.js';
import type { RedisEventLog } from './redis-events.js';
import { type ConversationStore, toPublicMessage } from './store.js';
import type { GenerationsTable } from './tables.js';

export type GenerationRow = GenerationsTable;

/**
 * Where a client reads a generation's events from, wherever it runs: this process's memory when it runs
 * here; otherwise the generation's Redis stream; without Redis, the database (which knows only how it
 * ended: the client gets the final event once the generation finishes).
 */
export class GenerationFeed {
  constructor(
    private readonly deps: {
      store: ConversationStore;
      manager: GenerationManager;
      redisLog?: RedisEventLog | undefined;
      pollMs?: number;
      /** With Redis: finishes a generation whose replica died (its lease expired). */
      finishAbandoned?: ((generationId: string) => Promise<boolean>) | undefined;
    },
  ) {}

  findOwned(userId: string, generationId: string): Promise<GenerationRow | undefined> {
    return this.deps.store.db
      .selectFrom('generations')
      .selectAll()
      .where('id', '=', generationId)
      .where('user_id', '=', userId)
      .executeTakeFirst();
  }

  async *follow(generationId: string, after: number, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const live = this.deps.manager.get(generationId);
    if (live) {
      yield* live.follow(after, signal);
      return;
    }
    const ended = await this.#endedInDatabase(generationId, after);
    if (ended === 'ended') return;
    if (ended && !this.deps.redisLog) {
      yield ended;
      return;
    }
    if (this.deps.redisLog) {
      // While nothing arrives, a generation whose replica died is finished here (its final event follows).
      yield* this.deps.redisLog.read(generationId, after, signal, async (last) => {
        const ended = await this.#endedInDatabase(generationId, last);
        if (ended !== null || !(await this.deps.finishAbandoned?.(generationId))) return ended;
        return this.#endedInDatabase(generationId, last);
      });
      return;
    }
    // Running on another replica, no Redis to relay it: wait for the database to say how it ended.
    while (!signal.aborted) {
      await sleep(this.deps.pollMs ?? 500, undefined, { signal }).catch(() => {});
      if (signal.aborted) return;
      const result = await this.#endedInDatabase(generationId, after);
      if (result === 'ended') return;
      if (result) {
        yield result;
        return;
      }
    }
  }

  /** Waits for the generation's final event (wherever it runs) and returns it. */
  async final(generationId: string, signal: AbortSignal): Promise<GenerationEvent | undefined> {
    let last: GenerationEvent | undefined;
    for await (const event of this.follow(generationId, 0, signal)) if (isFinalEvent(event)) last = event;
    return last ?? (await this.#finalFromDatabase(generationId));
  }

  /**
   * null while the database says the generation runs; otherwise its final event rebuilt from the stored
   * message, or 'ended' when the client already has it (`after` is at or past it).
   */
  async #endedInDatabase(generationId: string, after: number): Promise<GenerationEvent | 'ended' | null> {
    const row = await this.deps.store.db
      .selectFrom('generations')
      .select(['status', 'last_event_id'])
      .where('id', '=', generationId)
      .executeTakeFirst();
    if (!row || row.status === 'running') return null;
    if (row.last_event_id !== null && after >= row.last_event_id) return 'ended';
    return (await this.#finalFromDatabase(generationId, after)) ?? 'ended';
  }

  async #finalFromDatabase(generationId: string, after = 0): Promise<GenerationEvent | undefined> {
    const row = await this.deps.store.db
      .selectFrom('generations')
      .innerJoin('messages', 'messages.id', 'generations.message_id')
      .selectAll('messages')
      .select([
        'generations.status as generation_status',
        'generations.error as error_code',
        'generations.last_event_id as last_event_id',
      ])
      .where('generations.id', '=', generationId)
      .executeTakeFirst();
    if (!row || row.generation_status === 'running') return undefined;
    const { generation_status, error_code, last_event_id, ...message } = row;
    const usage =
      message.prompt_tokens !== null || message.completion_tokens !== null
        ? {
            prompt_tokens: message.prompt_tokens ?? 0,
            completion_tokens: message.completion_tokens ?? 0,
            total_tokens: (message.prompt_tokens ?? 0) + (message.completion_tokens ?? 0),
          }
        : null;
    const id = last_event_id ?? after + 1;
    const data = { message: toPublicMessage(message), usage };
    if (generation_status === 'complete') return { id, type: 'done', data };
    return {
      id,
      type: 'error',
      data: {
        ...data,
        error: { code: error_code ?? 'interrupted', message: message.error ?? 'the reply stopped early' },
      },
    };
  }
}
