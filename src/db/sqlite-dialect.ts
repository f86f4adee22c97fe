import type BetterSqlite3 from 'better-sqlite3';
import {
  type DatabaseConnection,
  type Driver,
  type SqliteDatabase,
  SqliteDialect,
  SqliteDriver,
} from 'kysely';

/**
 * Kysely's SQLite dialect, except that a transaction SQLite already rolled back is not rolled back again.
 * On SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY or SQLITE_NOMEM SQLite may end the transaction itself; Kysely's
 * ROLLBACK then fails with "cannot rollback - no transaction is active" and that error replaces the real one,
 * so a full disk would answer 500 instead of 503 storage_full.
 */
export class AutoRollbackAwareSqliteDialect extends SqliteDialect {
  readonly #sqlite: BetterSqlite3.Database;
  readonly #database: SqliteDatabase;

  /** `database` runs the queries (it may wrap `sqlite`); `sqlite` tells whether a transaction is open. */
  constructor(sqlite: BetterSqlite3.Database, database: SqliteDatabase = sqlite) {
    super({ database });
    this.#sqlite = sqlite;
    this.#database = database;
  }

  override createDriver(): Driver {
    const sqlite = this.#sqlite;
    return new (class extends SqliteDriver {
      override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
        if (sqlite.inTransaction) await super.rollbackTransaction(connection);
      }
    })({ database: this.#database });
  }
}
