import { nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { Principal } from '../auth/principal.js';
import type { ResponseObject } from './from-internal.js';
import type { ResponseInputItem } from './to-internal.js';

export interface StoredResponse {
  id: string;
  /** The conversation up to this turn: every earlier input and output item, then this turn's input. */
  inputItems: ResponseInputItem[];
  response: ResponseObject;
}

/** The caller a response belongs to: its user and API key (the master key owns what it stored itself). */
const owner = (principal: Principal) => ({ user_id: principal.userId, api_key_id: principal.apiKeyId });

/** Stored Responses API responses, owned by the caller; another caller's id is as good as absent. */
export class ResponsesStore {
  constructor(private readonly db: Db) {}

  async save(principal: Principal, stored: StoredResponse) {
    await this.db
      .insertInto('responses')
      .values({
        id: stored.id,
        ...owner(principal),
        model: stored.response.model,
        previous_response_id: stored.response.previous_response_id,
        input_items: JSON.stringify(stored.inputItems),
        output_items: JSON.stringify(stored.response.output),
        response: JSON.stringify(stored.response),
        created_at: nowIso(),
      })
      .execute();
  }

  async get(principal: Principal, id: string): Promise<StoredResponse | undefined> {
    const { user_id, api_key_id } = owner(principal);
    const row = await this.db
      .selectFrom('responses')
      .select(['id', 'input_items', 'response'])
      .where('id', '=', id)
      .where((eb) => (user_id === null ? eb('user_id', 'is', null) : eb('user_id', '=', user_id)))
      .where((eb) => (api_key_id === null ? eb('api_key_id', 'is', null) : eb('api_key_id', '=', api_key_id)))
      .executeTakeFirst();
    if (!row) return undefined;
    return { id: row.id, inputItems: JSON.parse(row.input_items), response: JSON.parse(row.response) };
  }

  /** Whether a response of the caller's was deleted. */
  async delete(principal: Principal, id: string): Promise<boolean> {
    const { user_id, api_key_id } = owner(principal);
    const result = await this.db
      .deleteFrom('responses')
      .where('id', '=', id)
      .where((eb) => (user_id === null ? eb('user_id', 'is', null) : eb('user_id', '=', user_id)))
      .where((eb) => (api_key_id === null ? eb('api_key_id', 'is', null) : eb('api_key_id', '=', api_key_id)))
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  /**
   * Drops responses stored longer than `retentionDays` ago (CONVERSATION_RETENTION_DAYS: they hold prompts
   * and replies like conversations), in bounded batches so a backlog never holds a long transaction.
   */
  async prune(options: { retentionDays: number; batchSize?: number; now?: Date }): Promise<number> {
    if (options.retentionDays <= 0) return 0;
    const cutoff = new Date(
      (options.now ?? new Date()).getTime() - options.retentionDays * 86_400_000,
    ).toISOString();
    const batchSize = options.batchSize ?? 500;
    let deleted = 0;
    for (let batch = 0; batch < 100; batch++) {
      const ids = (
        await this.db
          .selectFrom('responses')
          .select('id')
          .where('created_at', '<', cutoff)
          .limit(batchSize)
          .execute()
      ).map((r) => r.id);
      if (ids.length === 0) break;
      const result = await this.db.deleteFrom('responses').where('id', 'in', ids).executeTakeFirst();
      deleted += Number(result.numDeletedRows);
      if (ids.length < batchSize) break;
    }
    return deleted;
  }
}
