import { createRequire } from 'node:module';
import type pg from 'pg';

/**
 * The pg driver, loaded on first use: a server on SQLite never needs it, and its modules would stay in memory.
 * A synchronous require keeps openDatabase() synchronous for its callers.
 */
export const loadPg = (): typeof pg => createRequire(import.meta.url)('pg') as typeof pg;

let resilientPgClient: ReturnType<typeof defineResilientPgClient> | undefined;

/** The ResilientPgClient class below, defined when PostgreSQL is first used (it extends pg's Client). */
export function resilientPgClientClass(): ReturnType<typeof defineResilientPgClient> {
  resilientPgClient ??= defineResilientPgClient(loadPg());
  return resilientPgClient;
}

/**
 * The pg client of Colloquy's pool, safe through database restarts, pauses and network loss:
 *
 * - A client lent out by the pool has no 'error' listener of its own, so a connection the server ends
 *   between two queries (a restart terminating sessions) would raise an uncaught 'error' event and crash
 *   the process. Here the event is ignored: the next query on the client fails and the pool discards it.
 * - A query past the client-side `query_timeout` only makes pg stop waiting: the client goes back to the
 *   pool still bound to that connection. If the connection itself is dead (a paused server, a firewall
 *   that silently dropped it), every later borrower would wait out the timeout on it again, until TCP gives
 *   up minutes later. The connection is closed instead, so the pool drops the client and opens a fresh one.
 *   (Transactions are safe either way: Kysely discards a connection whose ROLLBACK failed.)
 */
function defineResilientPgClient(driver: typeof pg) {
  return class ResilientPgClient extends driver.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      this.on('error', () => {});
    }

    // biome-ignore lint/suspicious/noExplicitAny: forwards every overload of pg's query() unchanged
    override query(...args: any[]): any {
      // biome-ignore lint/suspicious/noExplicitAny: see above
      const result = (super.query as (...a: any[]) => unknown)(...args);
      if (result instanceof Promise) {
        result.catch((err: unknown) => {
          if ((err as Error | undefined)?.message === 'Query read timeout') this.end().catch(() => {});
        });
      }
      return result;
    }
  };
}
