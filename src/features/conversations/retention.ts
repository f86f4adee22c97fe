import type { Db } from '../../db/database.js';

/**
 * Deletes conversations (and, by cascade, their messages) untouched for `retentionDays`, in bounded
 * batches so a large backlog never holds a long transaction. Prompts and replies live in `messages`, apart
 * from the narrow usage rows, which keep their own retention. Returns how many conversations were deleted.
 */
export async function pruneConversations(
  db: Db,
  options: { retentionDays: number; batchSize?: number; maxBatches?: number; now?: Date },
): Promise<number> {
  if (options.retentionDays <= 0) return 0;
  const cutoff = new Date(
    (options.now ?? new Date()).getTime() - options.retentionDays * 86_400_000,
  ).toISOString();
  const batchSize = options.batchSize ?? 500;
  let deleted = 0;
  for (let batch = 0; batch < (options.maxBatches ?? 100); batch++) {
    const ids = (
      await db
        .selectFrom('conversations')
        .select('id')
        .where('updated_at', '<', cutoff)
        .limit(batchSize)
        .execute()
    ).map((r) => r.id);
    if (ids.length === 0) break;
    const result = await db.deleteFrom('conversations').where('id', 'in', ids).executeTakeFirst();
    deleted += Number(result.numDeletedRows);
    if (ids.length < batchSize) break;
  }
  return deleted;
}
