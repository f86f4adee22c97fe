import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Every guardrail verdict (issue 22): which request, which guardrail, at which stage, what was done and the
 * category matched (`email`, `deny`, `timeout`, …). Never the matched text: a table of redacted secrets
 * would be the most valuable table in the database.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('guardrail_events')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('request_id', t.key, (c) => c.notNull())
    .addColumn('guardrail', t.key, (c) => c.notNull())
    .addColumn('stage', t.short, (c) => c.notNull())
    .addColumn('action', t.short, (c) => c.notNull())
    .addColumn('category', t.key, (c) => c.notNull())
    .addColumn('created_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('guardrail_events_created_idx')
    .on('guardrail_events')
    .column('created_at')
    .execute();
  await db.schema
    .createIndex('guardrail_events_request_idx')
    .on('guardrail_events')
    .column('request_id')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('guardrail_events').execute();
}
