import { sql } from 'kysely';
import type { Logger } from '../../core/logger.js';
import { localDay } from '../../core/timezone.js';
import type { Db } from '../../db/database.js';
import { onConflictUpdate, proposed } from '../../db/portable.js';
import type { Principal } from '../auth/principal.js';

export type RejectionReason = 'rate_limited' | 'budget_exceeded';

export interface LimitRejectionsDailyTable {
  /** YYYY-MM-DD in TIMEZONE (UTC by default). */
  day: string;
  /** '' for none (the master key, an address limit). */
  user_id: string;
  api_key_id: string;
  reason: RejectionReason;
  rejections: number;
}

/** The table of migration 0006, typed here so the shared schema file stays untouched. */
const withRejectionsTable = (db: Db) =>
  db.withTables<{ limit_rejections_daily: LimitRejectionsDailyTable }>();

/** Groups held in memory before a flush is forced (a flood of refusals from many keys). */
const MAX_PENDING_GROUPS = 5_000;
const SEPARATOR = '\u0000';

/**
 * Counts requests refused by rate limits and budgets into `limit_rejections_daily`. Counting is a Map
 * increment (refusals must stay cheap: they are what a client in a retry loop produces); the counts are
 * written every few seconds with one upsert per (day, user, key, reason), never on a successful request.
 */
export class RejectionCounter {
  readonly #db: Db;
  readonly #logger: Logger | undefined;
  #pending = new Map<string, number>();
  #flushing: Promise<void> | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #timeZone: string;

  constructor(
    db: Db,
    options: { logger?: Logger | undefined; flushIntervalMs?: number; timeZone?: string } = {},
  ) {
    this.#db = db;
    this.#timeZone = options.timeZone ?? 'UTC';
    this.#logger = options.logger;
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 5_000);
    this.#timer.unref();
  }

  count(principal: Principal, reason: RejectionReason, now = new Date()) {
    const key = [
      localDay(now, this.#timeZone),
      principal.userId ?? '',
      principal.apiKeyId ?? '',
      reason,
    ].join(SEPARATOR);
    this.#pending.set(key, (this.#pending.get(key) ?? 0) + 1);
    if (this.#pending.size >= MAX_PENDING_GROUPS) void this.flush();
  }

  /** Writes the counts so far; a failed write keeps them for the next flush. One flush runs at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#write().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #write() {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const db = withRejectionsTable(this.#db);
    for (const [key, n] of batch) {
      const [day, user_id, api_key_id, reason] = key.split(SEPARATOR) as [
        string,
        string,
        string,
        RejectionReason,
      ];
      try {
        const insert = db
          .insertInto('limit_rejections_daily')
          .values({ day, user_id, api_key_id, reason, rejections: n });
        await onConflictUpdate(db, insert, ['day', 'user_id', 'api_key_id', 'reason'], {
          rejections: sql`limit_rejections_daily.rejections + ${proposed(db, 'rejections')}`,
        }).execute();
      } catch (err) {
        this.#pending.set(key, (this.#pending.get(key) ?? 0) + n);
        this.#logger?.warn({ err }, 'could not write limit rejection counts; retrying at the next flush');
        return this.#keepRest(batch, key);
      }
    }
  }

  /** After a failed write, the groups not yet tried go back to the pending counts. */
  #keepRest(batch: Map<string, number>, failedKey: string) {
    let after = false;
    for (const [key, n] of batch) {
      if (after) this.#pending.set(key, (this.#pending.get(key) ?? 0) + n);
      if (key === failedKey) after = true;
    }
  }

  async close() {
    clearInterval(this.#timer);
    await this.flush();
  }
}

export interface RejectionTotals {
  rate_limited: number;
  budget_exceeded: number;
}

export interface RejectionQuery {
  from: string;
  to: string;
  groupBy: 'day' | 'user' | 'api_key';
  userId?: string | undefined;
  apiKeyId?: string | undefined;
}

/**
 * Refusals for a date range grouped by day, user or API key (the key is null for "none"), optionally for
 * one user or key. Counts reach the table within a flush interval of the refusal.
 */
export async function rejectionReport(
  db: Db,
  q: RejectionQuery,
): Promise<Map<string | null, RejectionTotals>> {
  const column = ({ day: 'day', user: 'user_id', api_key: 'api_key_id' } as const)[q.groupBy];
  let query = withRejectionsTable(db)
    .selectFrom('limit_rejections_daily')
    .select([
      sql<string>`${sql.ref(column)}`.as('key'),
      'reason',
      sql<number | string>`sum(rejections)`.as('n'),
    ])
    .where('day', '>=', q.from)
    .where('day', '<=', q.to)
    .groupBy([sql.ref(column), 'reason']);
  if (q.userId !== undefined) query = query.where('user_id', '=', q.userId);
  if (q.apiKeyId !== undefined) query = query.where('api_key_id', '=', q.apiKeyId);
  const totals = new Map<string | null, RejectionTotals>();
  for (const row of await query.execute()) {
    const key = row.key === '' ? null : row.key;
    const entry = totals.get(key) ?? { rate_limited: 0, budget_exceeded: 0 };
    entry[row.reason] += Number(row.n);
    totals.set(key, entry);
  }
  return totals;
}
