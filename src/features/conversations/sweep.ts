import { nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import { withConversationTables } from './tables.js';

export const INTERRUPTED = 'interrupted: the server stopped before the reply finished';

/**
 * Marks generations orphaned by a crash: assistant messages left 'streaming' become 'partial' (their text
 * so far is kept, it was saved every second) and their generations end. Call it at start-up with no
 * staleness on a single instance; with several replicas sharing a database pass `staleAfterMs` (rows a
 * live generation has not touched for that long), since a streaming row may belong to another replica.
 * Returns the number of messages marked.
 */
export async function sweepOrphanedGenerations(
  db: Db,
  options: { staleAfterMs?: number } = {},
): Promise<number> {
  const conversationDb = withConversationTables(db);
  const now = nowIso();
  const cutoff = new Date(Date.now() - (options.staleAfterMs ?? 0)).toISOString();
  return conversationDb.transaction().execute(async (trx) => {
    const orphans = await trx
      .selectFrom('messages')
      .select('id')
      .where('status', '=', 'streaming')
      .where('updated_at', '<=', cutoff)
      .execute();
    if (orphans.length === 0) return 0;
    const ids = orphans.map((o) => o.id);
    for (let i = 0; i < ids.length; i += 500) {
      const batch = ids.slice(i, i + 500);
      await trx
        .updateTable('messages')
        .set({ status: 'partial', error: INTERRUPTED, updated_at: now })
        .where('id', 'in', batch)
        .where('status', '=', 'streaming')
        .execute();
      await trx
        .updateTable('generations')
        .set({ status: 'partial', error: 'interrupted', updated_at: now, finished_at: now })
        .where('message_id', 'in', batch)
        .where('status', '=', 'running')
        .execute();
    }
    return ids.length;
  });
}
