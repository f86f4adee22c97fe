import { sql } from 'kysely';
import type { Logger } from '../../core/logger.js';
import { addDays, dayStartIso as dayStart, localDay, UTC } from '../../core/timezone.js';
import { type Db, isWriteRace } from '../../db/database.js';
import { castText, isMysql } from '../../db/portable.js';
import { roundUsd } from '../usage/prices.js';
import { withLimitsTables } from './tables.js';

/** Ledger statuses counted as errors in roll-ups: failed before or during the answer. */
const ERROR_STATUSES = ['error', 'partial'];
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** A real calendar day as YYYY-MM-DD: 2026-02-31 is not one (Date.parse rolls it over to March 3). */
export function isDay(day: string): boolean {
  if (!DAY.test(day)) return false;
  const ms = Date.parse(`${day}T00:00:00.000Z`);
  return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 10) === day;
}

function assertDay(day: string) {
  if (!isDay(day)) throw new Error(`expected a day as YYYY-MM-DD, got ${day}`);
}

export const utcDay = (date: Date) => localDay(date, UTC);

export interface RollupResult {
  day: string;
  /** Rows of usage_daily for the day: one per (user, key, model). */
  groups: number;
  requests: number;
  /** True when the ledger holds fewer requests than the roll-up (pruned): the roll-up was kept. */
  skipped: boolean;
}

/**
 * Recomputes one day of `usage_daily` (a day in `timeZone`, TIMEZONE; UTC by default) from the usage ledger (delete + insert in one transaction), so it
 * can run any number of times, from any replica. A day whose ledger holds fewer requests than its roll-up
 * has been (partly) pruned: its roll-up, now the only record, is kept as it is.
 */
export async function rollup(db: Db, day: string, timeZone: string = UTC): Promise<RollupResult> {
  assertDay(day);
  const from = dayStart(day, timeZone);
  const to = dayStart(addDays(day, 1), timeZone);
  const ldb = withLimitsTables(db);
  for (let attempt = 0; ; attempt++) {
    try {
      return await ldb.transaction().execute(async (trx) => {
        const [ledger, rolled] = await Promise.all([
          trx
            .selectFrom('usage_records')
            .select(sql<number | string>`count(*)`.as('n'))
            .where('created_at', '>=', from)
            .where('created_at', '<', to)
            .executeTakeFirstOrThrow(),
          trx
            .selectFrom('usage_daily')
            .select([
              sql<number | string>`count(*)`.as('groups'),
              sql<number | string | null>`sum(requests)`.as('requests'),
            ])
            .where('day', '=', day)
            .executeTakeFirstOrThrow(),
        ]);
        const ledgerRequests = Number(ledger.n);
        const rolledRequests = Number(rolled.requests ?? 0);
        if (ledgerRequests < rolledRequests) {
          return { day, groups: Number(rolled.groups), requests: rolledRequests, skipped: true };
        }
        await trx.deleteFrom('usage_daily').where('day', '=', day).execute();
        const source = trx
          .selectFrom('usage_records')
          .select([
            castText(trx, day).as('day'),
            'user_id',
            'api_key_id',
            'model',
            'protocol',
            sql<number>`count(*)`.as('requests'),
            sql<number>`coalesce(sum(prompt_tokens), 0)`.as('prompt_tokens'),
            sql<number>`coalesce(sum(completion_tokens), 0)`.as('completion_tokens'),
            sql<number>`coalesce(sum(cost_usd), 0)`.as('cost_usd'),
            sql<number>`coalesce(sum(case when cached <> 0 then 1 else 0 end), 0)`.as('cached_requests'),
            sql<number>`coalesce(sum(case when status in (${sql.join(ERROR_STATUSES)}) then 1 else 0 end), 0)`.as(
              'errors',
            ),
          ])
          .where('created_at', '>=', from)
          .where('created_at', '<', to)
          .groupBy(['user_id', 'api_key_id', 'model', 'protocol']);
        const inserted = await trx
          .insertInto('usage_daily')
          .columns([
            'day',
            'user_id',
            'api_key_id',
            'model',
            'protocol',
            'requests',
            'prompt_tokens',
            'completion_tokens',
            'cost_usd',
            'cached_requests',
            'errors',
          ])
          .expression(source)
          .executeTakeFirst();
        return {
          day,
          groups: Number(inserted.numInsertedOrUpdatedRows ?? 0),
          requests: ledgerRequests,
          skipped: false,
        };
      });
    } catch (err) {
      // Another replica rolled the same day up at the same moment: wait a little and redo it.
      if (isWriteRace(err) && attempt < 8) {
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * (attempt + 1)));
        continue;
      }
      throw err;
    }
  }
}

export type UsageGroup = 'api_key' | 'user' | 'model' | 'day' | 'protocol';

export interface UsageQuery {
  /** First and last day (inclusive), YYYY-MM-DD, in `timeZone`. */
  from: string;
  to: string;
  groupBy: UsageGroup;
  userId?: string | undefined;
  apiKeyId?: string | undefined;
  model?: string | undefined;
  /** One client protocol (chat_completions, messages, …). */
  protocol?: string | undefined;
  /** "Today" (tests): days before it come from usage_daily, today from the ledger itself. */
  now?: Date;
  /** TIMEZONE: the zone whose days the figures are for (default UTC); usage_daily is rolled up in it. */
  timeZone?: string;
}

export interface UsageTotals {
  /** The key id, user id, model or day; null for usage without a key or user (e.g. the master key). */
  key: string | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
  cached_requests: number;
  errors: number;
}

const DAILY_COLUMNS = {
  api_key: 'api_key_id',
  user: 'user_id',
  model: 'model',
  day: 'day',
  protocol: 'protocol',
} as const;

/**
 * Usage so far for a date range, grouped by key, user, model or day: completed days from `usage_daily`
 * (kept after the ledger is pruned), today straight from the ledger so the numbers are current. Days before
 * today count once the roll-up job has run for them (it runs after midnight).
 */
export async function usageReport(db: Db, query: UsageQuery): Promise<UsageTotals[]> {
  assertDay(query.from);
  assertDay(query.to);
  const timeZone = query.timeZone ?? UTC;
  const today = localDay(query.now ?? new Date(), timeZone);
  const ldb = withLimitsTables(db);
  const parts: UsageTotals[][] = [];

  const lastRolled = query.to < today ? query.to : addDays(today, -1);
  if (query.from <= lastRolled) {
    const column = DAILY_COLUMNS[query.groupBy];
    let q = ldb
      .selectFrom('usage_daily')
      .select([
        sql<string | null>`${sql.ref(column)}`.as('key'),
        sql<number>`sum(requests)`.as('requests'),
        sql<number>`sum(prompt_tokens)`.as('prompt_tokens'),
        sql<number>`sum(completion_tokens)`.as('completion_tokens'),
        sql<number>`sum(cost_usd)`.as('cost_usd'),
        sql<number>`sum(cached_requests)`.as('cached_requests'),
        sql<number>`sum(errors)`.as('errors'),
      ])
      .where('day', '>=', query.from)
      .where('day', '<=', lastRolled)
      .groupBy(sql.ref(column));
    if (query.userId !== undefined) q = q.where('user_id', '=', query.userId);
    if (query.apiKeyId !== undefined) q = q.where('api_key_id', '=', query.apiKeyId);
    if (query.model !== undefined) q = q.where('model', '=', query.model);
    if (query.protocol !== undefined) q = q.where('protocol', '=', query.protocol);
    parts.push((await q.execute()).map(toTotals));
  }

  const liveFrom = [query.from, today].sort()[1]!; // the later day
  if (liveFrom <= query.to) {
    // Outside UTC a row's day is not its timestamp's first ten characters: rows are grouped by UTC minute
    // (every zone's offset is a whole number of minutes; a day has at most 1,440) and each minute mapped
    // to its local day below.
    const byMinute = query.groupBy === 'day' && timeZone !== UTC;
    const key =
      query.groupBy === 'day'
        ? byMinute
          ? sql<string | null>`substr(created_at, 1, 16)`
          : sql<string | null>`substr(created_at, 1, 10)`
        : sql<string | null>`${sql.ref(DAILY_COLUMNS[query.groupBy])}`;
    let q = db
      .selectFrom('usage_records')
      .select([
        key.as('key'),
        sql<number>`count(*)`.as('requests'),
        sql<number>`sum(prompt_tokens)`.as('prompt_tokens'),
        sql<number>`sum(completion_tokens)`.as('completion_tokens'),
        sql<number>`sum(cost_usd)`.as('cost_usd'),
        sql<number>`sum(case when cached <> 0 then 1 else 0 end)`.as('cached_requests'),
        sql<number>`sum(case when status in (${sql.join(ERROR_STATUSES)}) then 1 else 0 end)`.as('errors'),
      ])
      .where('created_at', '>=', dayStart(liveFrom, timeZone))
      .where('created_at', '<', dayStart(addDays(query.to, 1), timeZone))
      .groupBy(key);
    if (query.userId !== undefined) q = q.where('user_id', '=', query.userId);
    if (query.apiKeyId !== undefined) q = q.where('api_key_id', '=', query.apiKeyId);
    if (query.model !== undefined) q = q.where('model', '=', query.model);
    if (query.protocol !== undefined) q = q.where('protocol', '=', query.protocol);
    const live = (await q.execute()).map(toTotals);
    if (byMinute) for (const row of live) row.key = localDay(Date.parse(`${row.key}:00.000Z`), timeZone);
    parts.push(live);
  }

  const merged = new Map<string | null, UsageTotals>();
  for (const row of parts.flat()) {
    const into = merged.get(row.key);
    if (!into) {
      merged.set(row.key, { ...row });
      continue;
    }
    into.requests += row.requests;
    into.prompt_tokens += row.prompt_tokens;
    into.completion_tokens += row.completion_tokens;
    into.cost_usd += row.cost_usd;
    into.cached_requests += row.cached_requests;
    into.errors += row.errors;
  }
  // Sums of floats carry noise (0.00033120000000000035): figures are exact to 1e-10 USD, as prices are.
  const rows = [...merged.values()].map((row) => ({ ...row, cost_usd: roundUsd(row.cost_usd) }));
  if (query.groupBy === 'day') return rows.sort((a, b) => String(a.key).localeCompare(String(b.key)));
  return rows.sort((a, b) => b.cost_usd - a.cost_usd || String(a.key).localeCompare(String(b.key)));
}

function toTotals(row: Record<string, unknown>): UsageTotals {
  return {
    key: (row.key as string | null) ?? null,
    requests: Number(row.requests ?? 0),
    prompt_tokens: Number(row.prompt_tokens ?? 0),
    completion_tokens: Number(row.completion_tokens ?? 0),
    cost_usd: Number(row.cost_usd ?? 0),
    cached_requests: Number(row.cached_requests ?? 0),
    errors: Number(row.errors ?? 0),
  };
}

type Range = Omit<UsageQuery, 'groupBy'>;
export const spendByKey = (db: Db, range: Range) => usageReport(db, { ...range, groupBy: 'api_key' });
export const spendByUser = (db: Db, range: Range) => usageReport(db, { ...range, groupBy: 'user' });
export const spendByModel = (db: Db, range: Range) => usageReport(db, { ...range, groupBy: 'model' });
export const spendByDay = (db: Db, range: Range) => usageReport(db, { ...range, groupBy: 'day' });

export interface PruneOptions {
  /** Records older than this many whole days (in `timeZone`) are deleted; 0 keeps everything. */
  usageRetentionDays: number;
  timeZone?: string;
  /** Rows per DELETE (default 1000): short transactions that never hold the database for long. */
  batchSize?: number;
  /** Stop after this many batches (default unlimited); the next run carries on. */
  maxBatches?: number;
  now?: Date;
}

/**
 * Deletes usage records older than the retention, oldest day first, in batches, after making sure each
 * day is rolled up (so reports keep the totals). Returns how many records were deleted.
 */
export async function pruneUsage(db: Db, options: PruneOptions): Promise<number> {
  const days = Math.floor(options.usageRetentionDays);
  if (!(days > 0)) return 0;
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? 1000));
  const maxBatches = options.maxBatches ?? Number.POSITIVE_INFINITY;
  const timeZone = options.timeZone ?? UTC;
  const cutoff = dayStart(addDays(localDay(options.now ?? new Date(), timeZone), -days), timeZone);
  let deleted = 0;
  let batches = 0;
  while (batches < maxBatches) {
    const oldest = await db
      .selectFrom('usage_records')
      .select(sql<string | null>`min(created_at)`.as('at'))
      .where('created_at', '<', cutoff)
      .executeTakeFirst();
    if (!oldest?.at) break;
    const day = localDay(Date.parse(oldest.at), timeZone);
    const dayEnd = dayStart(addDays(day, 1), timeZone);
    // ISO timestamps: the earlier string is the earlier time.
    const bound = [dayEnd, cutoff].sort()[0]!;
    await rollup(db, day, timeZone);
    while (batches < maxBatches) {
      // MySQL refuses LIMIT in an IN subquery, and is the one that can order and limit a DELETE itself.
      const result = isMysql(db)
        ? await db
            .deleteFrom('usage_records')
            .where('created_at', '<', bound)
            .orderBy('created_at')
            .limit(batchSize)
            .executeTakeFirst()
        : await db
            .deleteFrom('usage_records')
            .where('id', 'in', (eb) =>
              eb
                .selectFrom('usage_records')
                .select('id')
                .where('created_at', '<', bound)
                .orderBy('created_at')
                .limit(batchSize),
            )
            .executeTakeFirst();
      const n = Number(result.numDeletedRows);
      deleted += n;
      batches++;
      if (n < batchSize) break;
      // Let requests in between batches (SQLite has one writer).
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return deleted;
}

export interface UsageJobsOptions {
  db: Db;
  logger?: Logger | undefined;
  usageRetentionDays: number;
  /** How often yesterday and today are rolled up (default 10 min). Pruning runs once a day. */
  intervalMs?: number;
  batchSize?: number;
  /** TIMEZONE: the zone whose days are rolled up (default UTC). */
  timeZone?: string;
}

/**
 * Background roll-ups and retention: every `intervalMs` yesterday and today are rolled up (idempotent, so
 * every replica may run it), and once per day old records are pruned. Returns a stop function.
 */
export function startUsageJobs(options: UsageJobsOptions): () => Promise<void> {
  let lastPrunedDay = '';
  let running: Promise<void> | undefined;
  const tick = async () => {
    const timeZone = options.timeZone ?? UTC;
    const today = localDay(new Date(), timeZone);
    try {
      await rollup(options.db, addDays(today, -1), timeZone);
      await rollup(options.db, today, timeZone);
      if (lastPrunedDay !== today) {
        const deleted = await pruneUsage(options.db, {
          usageRetentionDays: options.usageRetentionDays,
          batchSize: options.batchSize ?? 1000,
          timeZone,
        });
        lastPrunedDay = today;
        if (deleted > 0) options.logger?.info({ deleted }, 'pruned old usage records');
      }
    } catch (err) {
      options.logger?.warn({ err }, 'usage roll-up or pruning failed; retrying at the next interval');
    }
  };
  const timer = setInterval(
    () => {
      running ??= tick().finally(() => {
        running = undefined;
      });
    },
    options.intervalMs ?? 10 * 60_000,
  );
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
