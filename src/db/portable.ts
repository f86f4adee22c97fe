import {
  type Expression,
  type InsertQueryBuilder,
  type Kysely,
  MysqlAdapter,
  type RawBuilder,
  sql,
} from 'kysely';

/**
 * What differs between SQLite, PostgreSQL and MySQL/MariaDB, in one place, so migrations and stores stay
 * one code path. SQLite and PostgreSQL get exactly the SQL they always had: these helpers only change what
 * MySQL receives (a shipped migration must not change on the databases it already ran on).
 */

// biome-ignore lint/suspicious/noExplicitAny: any Kysely instance, whatever its table types.
type AnyDb = Kysely<any>;

/** True when the database is MySQL or MariaDB. */
export const isMysql = (db: AnyDb): boolean => db.getExecutor().adapter instanceof MysqlAdapter;

/**
 * Column types. MySQL cannot index, key or reference a `text` column (it needs a length), and its `text`
 * holds only 64 KB:
 * - `key`: ids, foreign keys, names, timestamps, anything indexed or unique — `varchar(255)` on MySQL.
 * - `short`: small enumerations and days (`status`, `scope`, `YYYY-MM-DD`) — `varchar(64)` on MySQL, so
 *   composite keys stay under InnoDB's 3072-byte key limit (utf8mb4: 4 bytes a character).
 * - `body`: unbounded content (messages, JSON documents) — `longtext` on MySQL.
 * Elsewhere all three are `text`, as before.
 */
export function columnTypes(db: AnyDb) {
  const mysql = isMysql(db);
  return {
    key: mysql ? ('varchar(255)' as const) : ('text' as const),
    short: mysql ? ('varchar(64)' as const) : ('text' as const),
    body: mysql ? sql`longtext` : sql`text`,
  };
}

/**
 * A string literal as a column default. MySQL 8 accepts a default on a `longtext` column only as an
 * expression (`('{}')`); MariaDB accepts both.
 */
export function textDefault(db: AnyDb, value: string): string | RawBuilder<unknown> {
  return isMysql(db) ? sql`(${sql.lit(value)})` : value;
}

/** `drop index` takes the table on MySQL. */
export async function dropIndex(db: AnyDb, index: string, table: string): Promise<void> {
  if (isMysql(db)) await sql`drop index ${sql.id(index)} on ${sql.table(table)}`.execute(db);
  else await db.schema.dropIndex(index).execute();
}

/** A value as text in a select list: `cast(… as text)` is `cast(… as char)` on MySQL. */
export function castText(db: AnyDb, value: unknown): RawBuilder<string> {
  return isMysql(db) ? sql<string>`cast(${value} as char)` : sql<string>`cast(${value} as text)`;
}

/**
 * The value the conflicting insert proposed, inside an upsert's update: PostgreSQL and SQLite call it
 * `excluded.col`, MySQL `values(col)` (MariaDB and MySQL 8 both accept it).
 */
export function proposed(db: AnyDb, column: string): Expression<unknown> {
  return isMysql(db) ? sql`values(${sql.ref(column)})` : sql.ref(`excluded.${column}`);
}

/**
 * `insert … on conflict (columns) do update set …`; on MySQL `on duplicate key update …`, which fires on any
 * unique key: callers use it on tables whose only other unique key is a fresh generated id.
 */
export function onConflictUpdate<DB, TB extends keyof DB, O>(
  db: AnyDb,
  query: InsertQueryBuilder<DB, TB, O>,
  columns: string[],
  set: Record<string, unknown>,
): InsertQueryBuilder<DB, TB, O> {
  // biome-ignore lint/suspicious/noExplicitAny: the update object is checked by the caller's table types.
  const values = set as any;
  if (isMysql(db)) return query.onDuplicateKeyUpdate(values);
  // biome-ignore lint/suspicious/noExplicitAny: column names of the caller's table.
  return query.onConflict((oc) => oc.columns(columns as any).doUpdateSet(values));
}

/** `insert … on conflict (column) do nothing`; on MySQL a no-op `on duplicate key update column = column`. */
export function onConflictIgnore<DB, TB extends keyof DB, O>(
  db: AnyDb,
  query: InsertQueryBuilder<DB, TB, O>,
  column: string,
): InsertQueryBuilder<DB, TB, O> {
  // biome-ignore lint/suspicious/noExplicitAny: a column of the caller's table.
  if (isMysql(db)) return query.onDuplicateKeyUpdate({ [column]: sql.ref(column) } as any);
  // biome-ignore lint/suspicious/noExplicitAny: a column of the caller's table.
  return query.onConflict((oc) => oc.column(column as any).doNothing());
}
