import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Expand-only: an assistant message keeps the tool calls its reply made (JSON, OpenAI's `tool_calls` shape),
 * null when it made none. Older releases ignore the column.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema.alterTable('messages').addColumn('tool_calls', t.body).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('messages').dropColumn('tool_calls').execute();
}
