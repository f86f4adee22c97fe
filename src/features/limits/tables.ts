import type { Generated } from 'kysely';
import type { Db } from '../../db/database.js';

/** Tables added by migration 0003-limits, typed here so the shared schema file stays untouched. */

export type LimitScope = 'key' | 'user';

export const LIMIT_NAMES = [
  'requests_per_minute',
  'requests_per_hour',
  'tokens_per_minute',
  'concurrent_streams',
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export interface LimitOverridesTable {
  id: string;
  scope: LimitScope;
  subject_id: string;
  limit_name: LimitName;
  /** Negative: unlimited. 0: nothing allowed. */
  value: number;
  created_at: string;
  updated_at: string;
}

export type BudgetPeriod = 'day' | 'month';

export interface BudgetsTable {
  id: string;
  scope: LimitScope;
  subject_id: string;
  period: BudgetPeriod;
  limit_usd: number | null;
  limit_tokens: number | null;
  created_at: string;
  updated_at: string;
}

export interface UsageDailyTable {
  /** YYYY-MM-DD (UTC). */
  day: string;
  user_id: string | null;
  api_key_id: string | null;
  model: string;
  /** The client protocol (migration 0009). */
  protocol: Generated<string>;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
  cached_requests: number;
  errors: number;
}

export type LimitsTables = {
  limit_overrides: LimitOverridesTable;
  budgets: BudgetsTable;
  usage_daily: UsageDailyTable;
};

export type LimitsDb = ReturnType<typeof withLimitsTables>;

export const withLimitsTables = (db: Db) => db.withTables<LimitsTables>();
