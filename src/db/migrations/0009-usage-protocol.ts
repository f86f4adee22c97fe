import { type Kysely, sql } from 'kysely';
import { columnTypes, isMysql } from '../portable.js';
import { mysqlGroupKey } from './0003-limits.js';

/**
 * The client protocol of each request (issue 20): `chat_completions`, `messages`, `responses`,
 * `embeddings`, `completions` or `conversations`, on the ledger and its daily roll-up, so usage can be
 * grouped and filtered by it. Rows written before this migration were all chat completions.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  for (const table of ['usage_records', 'usage_daily']) {
    await db.schema
      .alterTable(table)
      .addColumn('protocol', t.short, (c) => c.notNull().defaultTo('chat_completions'))
      .execute();
  }
  // A roll-up group is now (day, user, key, model, protocol).
  if (isMysql(db)) {
    await sql`alter table usage_daily drop column group_key`.execute(db);
    await mysqlGroupKey(db, ['day', 'user_id', 'api_key_id', 'model', 'protocol']);
    return;
  }
  await sql`drop index usage_daily_group_unique`.execute(db);
  await sql`create unique index usage_daily_group_unique on usage_daily (day, coalesce(user_id, ''), coalesce(api_key_id, ''), model, protocol)`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (isMysql(db)) {
    // Dropping the column drops its index with it.
    await sql`alter table usage_daily drop column group_key`.execute(db);
    await mysqlGroupKey(db, ['day', 'user_id', 'api_key_id', 'model']);
    for (const table of ['usage_records', 'usage_daily']) {
      await db.schema.alterTable(table).dropColumn('protocol').execute();
    }
    return;
  }
  await sql`drop index usage_daily_group_unique`.execute(db);
  await sql`create unique index usage_daily_group_unique on usage_daily (day, coalesce(user_id, ''), coalesce(api_key_id, ''), model)`.execute(
    db,
  );
  for (const table of ['usage_records', 'usage_daily']) {
    await db.schema.alterTable(table).dropColumn('protocol').execute();
  }
}
