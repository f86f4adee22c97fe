import { sql } from 'kysely';
import type { Db } from '../../db/database.js';
import type { BudgetWindow, Subject } from './budget-window.js';

/**
 * What the ledger says the subject spent in the window: the same query on SQLite and PostgreSQL (ISO
 * timestamps compare as text).
 */
export async function ledgerSpend(
  db: Db,
  subject: Subject,
  window: Pick<BudgetWindow, 'start' | 'end'>,
): Promise<{ usd: number; tokens: number }> {
  const row = await db
    .selectFrom('usage_records')
    .select([
      sql<number | string | null>`sum(cost_usd)`.as('usd'),
      sql<number | string | null>`sum(prompt_tokens + completion_tokens)`.as('tokens'),
    ])
    .where(subject.scope === 'key' ? 'api_key_id' : 'user_id', '=', subject.subjectId)
    .where('created_at', '>=', window.start)
    .where('created_at', '<', window.end)
    .executeTakeFirst();
  return { usd: Number(row?.usd ?? 0), tokens: Number(row?.tokens ?? 0) };
}
