import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { AppError } from '../../core/errors.js';
import { addDays, dayStartIso, localDay } from '../../core/timezone.js';
import type { Db } from '../../db/database.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { isDay, usageReport } from '../limits/rollups.js';
import { usageLabels } from './labels.js';
import { type RejectionQuery, rejectionReport } from './rejections.js';
import type { UsageRecorder } from './store.js';

const Day = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}$',
  description: 'YYYY-MM-DD (a day in TIMEZONE, UTC by default)',
});
const Totals = Type.Object({
  key: Type.Union([Type.String(), Type.Null()], { description: 'the key id, user id, model or day' }),
  label: Type.Optional(
    Type.Union([Type.String(), Type.Null()], {
      description: 'group_by=user: the email; group_by=api_key: the key’s name and prefix',
    }),
  ),
  requests: Type.Integer(),
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  cost_usd: Type.Number(),
  cached_requests: Type.Integer(),
  errors: Type.Integer(),
  p50_latency_ms: Type.Optional(
    Type.Union([Type.Number(), Type.Null()], { description: 'group_by=day only' }),
  ),
  p95_latency_ms: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
  p50_ttft_ms: Type.Optional(
    Type.Union([Type.Number(), Type.Null()], { description: 'time to first token' }),
  ),
  p95_ttft_ms: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
  rate_limited: Type.Optional(
    Type.Integer({
      description: 'requests refused by a rate limit (429); not with group_by=model or a model filter',
    }),
  ),
  budget_exceeded: Type.Optional(Type.Integer({ description: 'requests refused by a budget (429)' })),
});
type TotalsRow = Static<typeof Totals>;

const zeroTotals = (key: string | null): TotalsRow => ({
  key,
  requests: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  cost_usd: 0,
  cached_requests: 0,
  errors: 0,
});

/** Adds the refusals of each group (and rows for groups that were only ever refused). */
async function withRejections(db: Db, rows: TotalsRow[], q: RejectionQuery): Promise<TotalsRow[]> {
  const refused = await rejectionReport(db, q);
  const out = rows.map((row) => ({
    ...row,
    ...(refused.get(row.key) ?? { rate_limited: 0, budget_exceeded: 0 }),
  }));
  const seen = new Set(rows.map((r) => r.key));
  for (const [key, totals] of refused) if (!seen.has(key)) out.push({ ...zeroTotals(key), ...totals });
  if (q.groupBy === 'day') out.sort((a, b) => String(a.key).localeCompare(String(b.key)));
  return out;
}

/** Rows read at most for percentiles; past that the figures describe the newest rows of the range. */
const PERCENTILE_ROW_CAP = 200_000;

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/**
 * Latency and time-to-first-token percentiles per day, from the ledger (roll-ups keep sums, and sums make
 * no percentiles). Days whose rows were pruned by retention have none.
 */
async function dailyPercentiles(
  db: Db,
  q: {
    from: string;
    to: string;
    userId?: string | undefined;
    apiKeyId?: string | undefined;
    model?: string | undefined;
    timeZone: string;
  },
) {
  let query = db
    .selectFrom('usage_records')
    .select(['created_at', 'latency_ms', 'ttft_ms'])
    .where('created_at', '>=', dayStartIso(q.from, q.timeZone))
    .where('created_at', '<', dayStartIso(addDays(q.to, 1), q.timeZone))
    .where('cached', '=', 0)
    .orderBy('created_at', 'desc')
    .limit(PERCENTILE_ROW_CAP);
  if (q.userId) query = query.where('user_id', '=', q.userId);
  if (q.apiKeyId) query = query.where('api_key_id', '=', q.apiKeyId);
  if (q.model) query = query.where('model', '=', q.model);
  const byDay = new Map<string, { latency: number[]; ttft: number[] }>();
  for (const row of await query.execute()) {
    const day = localDay(Date.parse(row.created_at), q.timeZone);
    let entry = byDay.get(day);
    if (!entry) {
      entry = { latency: [], ttft: [] };
      byDay.set(day, entry);
    }
    if (row.latency_ms !== null) entry.latency.push(row.latency_ms);
    if (row.ttft_ms !== null) entry.ttft.push(row.ttft_ms);
  }
  const result = new Map<
    string,
    {
      p50_latency_ms: number | null;
      p95_latency_ms: number | null;
      p50_ttft_ms: number | null;
      p95_ttft_ms: number | null;
    }
  >();
  for (const [day, { latency, ttft }] of byDay) {
    latency.sort((a, b) => a - b);
    ttft.sort((a, b) => a - b);
    result.set(day, {
      p50_latency_ms: percentile(latency, 50),
      p95_latency_ms: percentile(latency, 95),
      p50_ttft_ms: percentile(ttft, 50),
      p95_ttft_ms: percentile(ttft, 95),
    });
  }
  return result;
}
const errors = { 400: Type.Ref('Error'), 401: Type.Ref('Error'), 403: Type.Ref('Error') };

/** Spend and usage so far, from the daily roll-ups (today live). A user sees their own; admins everyone's. */
export async function usageRoutes(
  fastify: FastifyInstance,
  deps: { db: Db; recorder: Pick<UsageRecorder, 'flush'>; timeZone?: string },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // Days are TIMEZONE's: "today", the default 30 days, and every day bucket begin at its midnight.
  const timeZone = deps.timeZone ?? 'UTC';
  app.get(
    '/api/usage',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['usage'],
        security: bearerSecurity,
        summary: 'Usage and spend for a date range, grouped by day, model, API key, user or client protocol',
        querystring: Type.Object({
          from: Type.Optional(Day),
          to: Type.Optional(Day),
          group_by: Type.Union(
            ['day', 'model', 'api_key', 'user', 'protocol'].map((g) => Type.Literal(g)),
            { default: 'day' },
          ),
          user_id: Type.Optional(Type.String({ description: 'admins: one user' })),
          api_key_id: Type.Optional(Type.String()),
          model: Type.Optional(Type.String()),
          protocol: Type.Optional(
            Type.String({
              description:
                'one client protocol (chat_completions, messages, responses, embeddings, completions, conversations), or guardrail: the calls guardrail checks made to a chat model',
            }),
          ),
        }),
        response: {
          200: Type.Object({ from: Day, to: Day, group_by: Type.String(), data: Type.Array(Totals) }),
          ...errors,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const q = request.query;
      for (const param of ['from', 'to'] as const) {
        const day = q[param];
        if (day !== undefined && !isDay(day))
          throw new AppError('validation_error', `\`${param}\` is not a calendar day: ${day}`, { param });
      }
      const today = localDay(new Date(), timeZone);
      const to = q.to ?? today;
      const from = q.from ?? addDays(to, -29);
      if (from > to)
        throw new AppError('validation_error', '`from` must not be after `to`', { param: 'from' });
      let userId = q.user_id;
      if (principal.role !== 'admin') {
        if (userId && userId !== principal.userId)
          throw new AppError('forbidden', 'only admins see other users’ usage');
        userId = principal.userId ?? undefined;
      }
      const filters = { userId, apiKeyId: q.api_key_id, model: q.model, protocol: q.protocol };
      const groupBy = q.group_by as 'day' | 'model' | 'api_key' | 'user' | 'protocol';
      // Rows are written in batches a few milliseconds late: write them first, so a client reading its usage
      // right after a request sees that request (on this replica).
      await deps.recorder.flush();
      let data: TotalsRow[] = await usageReport(deps.db, { from, to, groupBy, timeZone, ...filters });
      // Refusals happen before a model is routed: they have no model (nor protocol) to group or filter by.
      if (groupBy !== 'model' && groupBy !== 'protocol' && q.model === undefined && q.protocol === undefined)
        data = await withRejections(deps.db, data, { from, to, groupBy, userId, apiKeyId: q.api_key_id });
      if (groupBy === 'api_key' || groupBy === 'user') {
        const ids = data.flatMap((row) => (row.key === null ? [] : [row.key]));
        const labels = await usageLabels(deps.db, groupBy, ids);
        return {
          from,
          to,
          group_by: q.group_by,
          data: data.map((row) => ({
            ...row,
            label: row.key === null ? null : (labels.get(row.key) ?? null),
          })),
        };
      }
      if (groupBy !== 'day') return { from, to, group_by: q.group_by, data };
      const percentiles = await dailyPercentiles(deps.db, { from, to, timeZone, ...filters });
      const empty = { p50_latency_ms: null, p95_latency_ms: null, p50_ttft_ms: null, p95_ttft_ms: null };
      return {
        from,
        to,
        group_by: q.group_by,
        data: data.map((row) => ({ ...row, ...(percentiles.get(row.key ?? '') ?? empty) })),
      };
    },
  );
}
