import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Requests refused by a rate limit or a budget, counted per UTC day, user, API key and reason, so the
 * console can chart them across replicas (the Prometheus counter is per process). `''` stands for "no user"
 * or "no key" (the master key, an address limit): the primary key then needs no expression index, and
 * `insert … on conflict do update` works the same on SQLite and PostgreSQL.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('limit_rejections_daily')
    .addColumn('day', t.short, (c) => c.notNull())
    .addColumn('user_id', t.key, (c) => c.notNull().defaultTo(''))
    .addColumn('api_key_id', t.key, (c) => c.notNull().defaultTo(''))
    .addColumn('reason', t.short, (c) => c.notNull())
    .addColumn('rejections', 'bigint', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('limit_rejections_daily_pk', ['day', 'user_id', 'api_key_id', 'reason'])
    .execute();
  await db.schema
    .createIndex('limit_rejections_daily_user_idx')
    .on('limit_rejections_daily')
    .columns(['user_id', 'day'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('limit_rejections_daily').execute();
}
