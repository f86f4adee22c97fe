import { type Kysely, sql } from 'kysely';
import { columnTypes, isMysql } from '../portable.js';

/**
 * Limits and usage roll-ups: per key/user rate-limit overrides, spend budgets, and one row per
 * (day, user, key, model) summarising the usage ledger so reports stay cheap after the ledger is pruned.
 * Token totals are `bigint`: a month of tokens overflows PostgreSQL's 32-bit `integer`.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('limit_overrides')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('scope', t.short, (c) => c.notNull().check(sqlIn('scope', ['key', 'user'])))
    .addColumn('subject_id', t.key, (c) => c.notNull())
    .addColumn('limit_name', t.short, (c) =>
      c
        .notNull()
        .check(
          sqlIn('limit_name', [
            'requests_per_minute',
            'requests_per_hour',
            'tokens_per_minute',
            'concurrent_streams',
          ]),
        ),
    )
    // A negative value means unlimited; 0 refuses everything (a suspended key).
    .addColumn('value', 'bigint', (c) => c.notNull())
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .addUniqueConstraint('limit_overrides_subject_unique', ['scope', 'subject_id', 'limit_name'])
    .execute();

  await db.schema
    .createTable('budgets')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('scope', t.short, (c) => c.notNull().check(sqlIn('scope', ['key', 'user'])))
    .addColumn('subject_id', t.key, (c) => c.notNull())
    .addColumn('period', t.short, (c) => c.notNull().check(sqlIn('period', ['day', 'month'])))
    .addColumn('limit_usd', 'double precision')
    .addColumn('limit_tokens', 'bigint')
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .addUniqueConstraint('budgets_subject_unique', ['scope', 'subject_id', 'period'])
    .execute();

  await db.schema
    .createTable('usage_daily')
    .addColumn('day', t.short, (c) => c.notNull())
    .addColumn('user_id', t.key)
    .addColumn('api_key_id', t.key)
    .addColumn('model', t.body, (c) => c.notNull())
    .addColumn('requests', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('prompt_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('completion_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('cost_usd', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('cached_requests', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('errors', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  // One row per group even when two replicas roll up the same day at once (NULLs compare equal here).
  if (isMysql(db)) await mysqlGroupKey(db, ['day', 'user_id', 'api_key_id', 'model']);
  else
    await sql`create unique index usage_daily_group_unique on usage_daily (day, coalesce(user_id, ''), coalesce(api_key_id, ''), model)`.execute(
      db,
    );
  await db.schema.createIndex('usage_daily_user_idx').on('usage_daily').columns(['user_id', 'day']).execute();
  await db.schema
    .createIndex('usage_daily_key_idx')
    .on('usage_daily')
    .columns(['api_key_id', 'day'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['usage_daily', 'budgets', 'limit_overrides']) {
    await db.schema.dropTable(table).execute();
  }
}

function sqlIn(column: string, values: string[]) {
  return sql`${sql.ref(column)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
}

/**
 * MySQL's stand-in for the expression index above (MariaDB has no functional indexes, and the group's
 * columns together pass InnoDB's key length limit): a stored generated column holding a digest of the
 * group, NULL ids read as '', with a unique index on it. Also used by 0009.
 */
export async function mysqlGroupKey(db: Kysely<unknown>, columns: string[]): Promise<void> {
  const parts = columns.map((c) =>
    c === 'user_id' || c === 'api_key_id' ? sql`coalesce(${sql.ref(c)}, '')` : sql.ref(c),
  );
  await sql`alter table usage_daily add column group_key char(64) as (sha2(concat_ws(char(31), ${sql.join(parts)}), 256)) stored`.execute(
    db,
  );
  await sql`create unique index usage_daily_group_unique on usage_daily (group_key)`.execute(db);
}
