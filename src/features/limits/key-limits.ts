import type { Db } from '../../db/database.js';
import { type BudgetPeriod, type LimitName, withLimitsTables } from './tables.js';

export interface KeyLimits {
  budgets: { period: BudgetPeriod; limit_usd: number | null; limit_tokens: number | null }[];
  /** The key's own overrides; a limit not named takes the user's or the server's default. */
  rate_limits: Partial<Record<LimitName, number>>;
}

/** The budgets and rate-limit overrides of these keys, in two queries (the admin's list of every key). */
export async function keyLimits(db: Db, keyIds: string[]): Promise<Map<string, KeyLimits>> {
  const out = new Map<string, KeyLimits>(keyIds.map((id) => [id, { budgets: [], rate_limits: {} }]));
  if (keyIds.length === 0) return out;
  const limitsDb = withLimitsTables(db);
  const [budgets, overrides] = await Promise.all([
    limitsDb
      .selectFrom('budgets')
      .select(['subject_id', 'period', 'limit_usd', 'limit_tokens'])
      .where('scope', '=', 'key')
      .where('subject_id', 'in', keyIds)
      .orderBy('period')
      .execute(),
    limitsDb
      .selectFrom('limit_overrides')
      .select(['subject_id', 'limit_name', 'value'])
      .where('scope', '=', 'key')
      .where('subject_id', 'in', keyIds)
      .execute(),
  ]);
  for (const b of budgets)
    out.get(b.subject_id)?.budgets.push({
      period: b.period,
      limit_usd: b.limit_usd === null ? null : Number(b.limit_usd),
      limit_tokens: b.limit_tokens === null ? null : Number(b.limit_tokens),
    });
  for (const o of overrides) {
    const limits = out.get(o.subject_id);
    if (limits) limits.rate_limits[o.limit_name] = Number(o.value);
  }
  return out;
}
