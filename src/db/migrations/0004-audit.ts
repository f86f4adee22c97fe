import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/** The audit trail: auth events and every admin action. Append-only; never holds secrets or bodies. */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('audit_events')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('action', t.key, (c) => c.notNull())
    .addColumn('outcome', t.short, (c) => c.notNull())
    .addColumn('status_code', 'integer', (c) => c.notNull())
    .addColumn('actor_user_id', t.key)
    .addColumn('actor_key_id', t.key)
    .addColumn('actor_via', t.short)
    .addColumn('target_id', t.key)
    .addColumn('subject', t.body)
    .addColumn('ip', t.key)
    .addColumn('request_id', t.key)
    .execute();
  await db.schema.createIndex('audit_events_created_idx').on('audit_events').column('created_at').execute();
  await db.schema
    .createIndex('audit_events_actor_idx')
    .on('audit_events')
    .columns(['actor_user_id', 'created_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('audit_events').execute();
}
