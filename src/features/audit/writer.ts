import type { CompiledQuery } from 'kysely';
import type { Logger } from '../../core/logger.js';
import { executeRetryingTransient } from '../../db/batch-errors.js';
import type { Db } from '../../db/database.js';
import type { AuditEventsTable } from '../../db/schema.js';

/** Every column, in the order the compiled INSERT binds them (every row binds all, null when absent). */
const AUDIT_COLUMNS = [
  'id',
  'created_at',
  'action',
  'outcome',
  'status_code',
  'actor_user_id',
  'actor_key_id',
  'actor_via',
  'target_id',
  'subject',
  'ip',
  'request_id',
] as const satisfies readonly (keyof AuditEventsTable)[];
// A column added to the table and not to the list fails to compile here instead of going unwritten.
type Unlisted = Exclude<keyof AuditEventsTable, (typeof AUDIT_COLUMNS)[number]>;
const _everyColumnListed: [Unlisted] extends [never] ? true : never = true;
void _everyColumnListed;

/** Rows written per statement at most (12 columns each: far below SQLite's and PostgreSQL's bind limits). */
const MAX_BATCH = 200;
/**
 * How long an event may wait for others to share its write. The master key's model calls are admin writes,
 * so each was audited with its own INSERT and commit: that made the master key ~22 % slower than a user's
 * API key (issue 18 part 3). Batched like the usage ledger, the trail keeps one row per call at a few µs
 * each. The log line is still written at once; the audit API flushes before it reads.
 */
const FLUSH_DELAY_MS = 50;

/** The audit trail's rows, written in batches; `close()` writes whatever is waiting. */
export class AuditWriter {
  #pending: AuditEventsTable[] = [];
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  /** Compiled INSERTs by row count (at most MAX_BATCH of them). */
  readonly #sql = new Map<number, CompiledQuery>();

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
  ) {}

  add(event: AuditEventsTable): void {
    this.#pending.push(event);
    if (this.#closed || this.#pending.length >= MAX_BATCH) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
  }

  /** Writes every event queued so far; resolves once they (and earlier batches) are in the database. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#pending;
    if (batch.length === 0) return this.#writing;
    this.#pending = [];
    this.#writing = this.#writing.then(() => this.#write(batch));
    return this.#writing;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  async #write(batch: AuditEventsTable[]) {
    for (let i = 0; i < batch.length; i += MAX_BATCH) {
      const chunk = batch.length <= MAX_BATCH ? batch : batch.slice(i, i + MAX_BATCH);
      try {
        // Two replicas' batches can deadlock on MariaDB: the database's victim is run again, not dropped.
        await executeRetryingTransient(this.db, this.#insert(chunk), (err) =>
          this.logger.warn(
            { err, rows: chunk.length },
            'audit batch rolled back by the database: retrying it',
          ),
        );
      } catch (err) {
        if (chunk.length === 1) {
          this.logger.error({ err, requestId: chunk[0]!.request_id }, 'could not write the audit event');
          continue;
        }
        // One refused row must not cost the others theirs (a database that is down fails each quickly).
        for (const event of chunk)
          await this.db
            .executeQuery(this.#insert([event]))
            .catch((rowErr: unknown) =>
              this.logger.error(
                { err: rowErr, requestId: event.request_id },
                'could not write the audit event',
              ),
            );
      }
    }
  }

  /**
   * The INSERT for these rows: compiled once per batch size and bound with the rows' values, as the usage
   * ledger does. Building it through Kysely per batch cost the master key (whose every call is audited)
   * ~10 KiB of allocations a request (issue 26, bench/README.md).
   */
  #insert(rows: AuditEventsTable[]): CompiledQuery {
    let compiled = this.#sql.get(rows.length);
    if (!compiled) {
      const ordered = rows.map((row) => Object.fromEntries(AUDIT_COLUMNS.map((c) => [c, row[c]])));
      compiled = this.db
        .insertInto('audit_events')
        .values(ordered as unknown as AuditEventsTable[])
        .compile();
      this.#sql.set(rows.length, compiled);
    }
    // Sized once: grown by push it was reallocated several times per batch.
    const parameters: unknown[] = new Array(rows.length * AUDIT_COLUMNS.length);
    let at = 0;
    for (const row of rows) for (const column of AUDIT_COLUMNS) parameters[at++] = row[column] ?? null;
    if (parameters.length !== compiled.parameters.length)
      throw new Error(
        `audit batch binds ${parameters.length} values, its statement takes ${compiled.parameters.length}`,
      );
    return { ...compiled, parameters };
  }
}
