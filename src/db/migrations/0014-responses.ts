import { type Kysely, sql } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Stored Responses API responses (issue 20): `store` (default true) keeps a response so a follow-up with
 * `previous_response_id` continues from it, and GET / DELETE /v1/responses/{id} work. Owned by the caller
 * (its user and API key). `input_items` is the whole conversation up to this turn (earlier turns included),
 * so a continuation reads one row.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('responses')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key)
    .addColumn('api_key_id', t.key)
    .addColumn('model', t.body, (c) => c.notNull())
    .addColumn('previous_response_id', t.key)
    .addColumn('input_items', t.body, (c) => c.notNull())
    .addColumn('output_items', t.body, (c) => c.notNull())
    .addColumn('response', t.body, (c) => c.notNull())
    .addColumn('created_at', t.key, (c) => c.notNull())
    .execute();
  await sql`create index responses_created_at on responses (created_at)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('responses').execute();
}
