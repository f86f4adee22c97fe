import type SqliteDatabase from 'better-sqlite3';
import type { SqliteDatabase as KyselySqliteDatabase } from 'kysely';

/** Distinct statements kept prepared; hot queries are a few dozen, one-off ones (DDL, reports) age out. */
const DEFAULT_MAX_STATEMENTS = 256;

/**
 * The database handed to Kysely's SqliteDialect, preparing each distinct SQL text once. Kysely's SQLite
 * driver calls `prepare()` for every query, and preparing (parsing and planning in SQLite) costs more than
 * running the small hot queries themselves. Reusing a statement is safe here: Kysely runs one query at a time
 * on its single SQLite connection, and SQLite re-prepares a statement by itself after a schema change.
 */
export function withStatementCache(
  database: SqliteDatabase.Database,
  maxStatements = DEFAULT_MAX_STATEMENTS,
): KyselySqliteDatabase {
  // A Map iterates in insertion order: re-inserting on use makes the first key the least recently used.
  const statements = new Map<string, SqliteDatabase.Statement>();
  return {
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (statement) {
        statements.delete(sql);
      } else {
        statement = database.prepare(sql);
        if (statements.size >= maxStatements) statements.delete(statements.keys().next().value!);
      }
      statements.set(sql, statement);
      return statement;
    },
    close() {
      statements.clear();
      database.close();
    },
  };
}
