import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { Verdict } from './pipeline.js';

export interface GuardrailEventsTable {
  id: string;
  request_id: string;
  guardrail: string;
  stage: string;
  action: string;
  category: string;
  created_at: string;
}

/** The table of migration 0015, typed here so the shared schema file stays untouched. */
export const withGuardrailEvents = (db: Db) => db.withTables<{ guardrail_events: GuardrailEventsTable }>();

/** Rows held before a write is forced; past twice this, the oldest are dropped (counted in the log). */
const BATCH = 500;

/**
 * Writes verdicts to `guardrail_events` off the hot path: recording is an array push, rows go out every
 * second in one multi-row insert. A failed write keeps the rows for the next try, up to a bound: a database
 * outage must not grow the heap without end (the metric still counts every verdict).
 */
export class GuardrailEventRecorder {
  #pending: GuardrailEventsTable[] = [];
  #flushing: Promise<void> | undefined;
  #dropped = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly options: { logger?: Logger | undefined; flushIntervalMs?: number } = {},
  ) {
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1_000);
    this.#timer.unref();
  }

  record(requestId: string, verdict: Verdict, now = new Date()) {
    this.#pending.push({
      id: newId('gre'),
      request_id: requestId,
      guardrail: verdict.guardrail,
      stage: verdict.stage,
      action: verdict.action,
      category: verdict.category,
      created_at: now.toISOString(),
    });
    if (this.#pending.length >= BATCH) void this.flush();
  }

  flush(): Promise<void> {
    this.#flushing ??= this.#write().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #write() {
    while (this.#pending.length) {
      const batch = this.#pending.splice(0, BATCH);
      try {
        await withGuardrailEvents(this.db).insertInto('guardrail_events').values(batch).execute();
      } catch (err) {
        this.#pending.unshift(...batch);
        const over = this.#pending.length - 2 * BATCH;
        if (over > 0) {
          this.#pending.splice(0, over);
          this.#dropped += over;
        }
        this.options.logger?.warn(
          { err, dropped: this.#dropped },
          'could not write guardrail events; retrying',
        );
        return;
      }
    }
  }

  async close() {
    clearInterval(this.#timer);
    await this.flush();
  }
}
