import { setTimeout as sleep } from 'node:timers/promises';
import type { CompiledQuery } from 'kysely';
import type { Db } from './database.js';

/** Waits before each retry of a batch the database rolled back (deadlock, lock wait, serialization). */
const TRANSIENT_RETRY_DELAYS_MS = [50, 250];

/**
 * A statement the database rolled back for a reason of the moment, not of its rows: SQLSTATE class 40
 * (serialization failure, deadlock: PostgreSQL's code, MySQL's sqlState) and MySQL's lock wait timeout (1205).
 * InnoDB can pick two replicas' concurrent batch INSERTs as a deadlock's victim; dropping the batch then
 * lost its rows (rehearsal on MariaDB, 2 of 28 ledger rows).
 */
export function isTransient(err: unknown): boolean {
  const e = err as { code?: unknown; sqlState?: unknown; errno?: unknown } | null;
  return /^40/.test(String(e?.code ?? '')) || /^40/.test(String(e?.sqlState ?? '')) || e?.errno === 1205;
}

/** A row the database refuses for its content (a constraint, a bad value), not the database failing. */
export function isRowError(err: unknown): boolean {
  const code = String((err as { code?: unknown } | null)?.code ?? '');
  const sqlState = String((err as { sqlState?: unknown } | null)?.sqlState ?? '');
  // SQLSTATE classes 22 (data exception) and 23 (integrity constraint): PostgreSQL's code, MySQL's sqlState;
  // SQLite's per-row refusals.
  return (
    /^2[23]/.test(code) || /^2[23]/.test(sqlState) || /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)
  );
}

/**
 * Runs a batch statement, running it again (after 50, then 250 ms) when the database rolled it back for a
 * reason of the moment; `onRetry` is told each time (for a log line). Other failures are thrown at once.
 */
export async function executeRetryingTransient(
  db: Db,
  query: CompiledQuery,
  onRetry: (err: unknown) => void,
): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await db.executeQuery(query);
      return;
    } catch (err) {
      const delay = TRANSIENT_RETRY_DELAYS_MS[attempt];
      if (delay === undefined || !isTransient(err)) throw err;
      onRetry(err);
      await sleep(delay);
    }
  }
}
