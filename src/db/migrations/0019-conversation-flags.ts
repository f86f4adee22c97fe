import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Flagged conversations (issue 22: on a crisis referral "the conversation is flagged"): one row per flagged
 * conversation, gone with it. A table of its own rather than columns on `conversations`, so the hot table and
 * its queries stay as they were; `flagged_at` orders the admin's list. Expand-only.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('conversation_flags')
    .addColumn('conversation_id', t.key, (c) =>
      c.primaryKey().references('conversations.id').onDelete('cascade'),
    )
    .addColumn('reason', t.short, (c) => c.notNull())
    .addColumn('guardrail', t.key, (c) => c.notNull())
    .addColumn('category', t.short, (c) => c.notNull())
    .addColumn('flagged_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('conversation_flags_flagged_at_idx')
    .on('conversation_flags')
    .columns(['flagged_at', 'conversation_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('conversation_flags').execute();
}
