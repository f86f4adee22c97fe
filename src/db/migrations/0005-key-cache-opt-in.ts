import type { Kysely } from 'kysely';

/** Expand-only: a key may opt every request into the response cache (0 = only deterministic ones). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('api_keys')
    .addColumn('cache_responses', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('api_keys').dropColumn('cache_responses').execute();
}
