import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import { onConflictUpdate } from '../../db/portable.js';
import type { Principal } from '../auth/principal.js';
import type { LimitInvalidations } from './invalidations.js';
import { type BudgetPeriod, type LimitScope, type LimitsDb, withLimitsTables } from './tables.js';

export interface Budget {
  scope: LimitScope;
  subjectId: string;
  period: BudgetPeriod;
  /** null: no limit on spend in USD for this period. */
  limitUsd: number | null;
  /** null: no limit on tokens (prompt + completion) for this period. */
  limitTokens: number | null;
}

interface CacheEntry {
  budgets: Promise<Budget[]>;
  expiresAt: number;
  /** The list once read: what `knownNone` may trust without waiting. */
  known?: Budget[];
}

/** How long a replica reuses a subject's budgets when no change was announced (see LimitInvalidations). */
export const LIMITS_CACHE_TTL_MS = 5_000;

export interface LimitStoreOptions {
  cacheTtlMs?: number;
  /** Announces changes to every replica (and hears theirs); without it, changes apply in this process. */
  invalidations?: LimitInvalidations | undefined;
}

/**
 * Spend budgets per key and per user (`budgets`), at most one per (scope, subject, period). Reads are cached
 * per subject: a change applies at once here and, through `invalidations` (Redis pub/sub), on every replica;
 * `cacheTtlMs` (default 5 s) bounds staleness only while pub/sub is down.
 */
export class BudgetStore {
  readonly #db: LimitsDb;
  readonly #cacheTtlMs: number;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #invalidations: LimitInvalidations | undefined;
  /**
   * Bumped by every budget change seen here (made here or announced by another replica). A request admitted
   * with no budget compares it when it ends: a change in between means it may owe a budget set meanwhile.
   */
  changes = 0;

  constructor(db: Db, options: LimitStoreOptions = {}) {
    this.#db = withLimitsTables(db);
    this.#cacheTtlMs = options.cacheTtlMs ?? LIMITS_CACHE_TTL_MS;
    this.#invalidations = options.invalidations;
    this.#invalidations?.onChange((setting, scope, subjectId) => {
      if (setting === 'budgets') this.#forget(scope, subjectId);
    });
  }

  #forget(scope: LimitScope, subjectId: string) {
    this.changes++;
    // The cached value is the load's promise: dropping it also keeps later requests off a load in flight.
    if (subjectId === '*') {
      for (const key of this.#cache.keys()) if (key.startsWith(`${scope}:`)) this.#cache.delete(key);
    } else this.#cache.delete(`${scope}:${subjectId}`);
  }

  async #changed(scope: LimitScope, subjectId: string) {
    if (this.#invalidations) await this.#invalidations.announce('budgets', scope, subjectId);
    else this.#forget(scope, subjectId);
  }

  /**
   * Whether the key or user exists (a budget or override for a missing one is a 404, not a no-op). A deleted
   * user and their keys do not: their settings were removed with the account (users/account-admin.ts).
   */
  async subjectExists(scope: LimitScope, subjectId: string): Promise<boolean> {
    const row =
      scope === 'key'
        ? await this.#db
            .selectFrom('api_keys')
            .innerJoin('users', 'users.id', 'api_keys.user_id')
            .select('api_keys.id')
            .where('api_keys.id', '=', subjectId)
            .where('users.deleted_at', 'is', null)
            .executeTakeFirst()
        : await this.#db
            .selectFrom('users')
            .select('id')
            .where('id', '=', subjectId)
            .where('deleted_at', 'is', null)
            .executeTakeFirst();
    return row !== undefined;
  }

  /** The budgets that apply to a request: its key's and its user's. */
  async forPrincipal(principal: Principal): Promise<Budget[]> {
    const [key, user] = await Promise.all([
      principal.apiKeyId ? this.#cached('key', principal.apiKeyId) : [],
      principal.userId ? this.#cached('user', principal.userId) : [],
    ]);
    return [...key, ...user];
  }

  /**
   * Whether the principal's key and user are both known, from fresh cache entries, to have no budget: what
   * lets a call skip reserving and settling altogether. Unknown (not yet read, expired) counts as no.
   */
  knownNone(principal: Principal): boolean {
    const now = Date.now();
    const none = (scope: LimitScope, subjectId: string) => {
      const hit = this.#cache.get(`${scope}:${subjectId}`);
      return hit !== undefined && hit.expiresAt > now && hit.known?.length === 0;
    };
    return (
      (!principal.apiKeyId || none('key', principal.apiKeyId)) &&
      (!principal.userId || none('user', principal.userId))
    );
  }

  #cached(scope: LimitScope, subjectId: string): Promise<Budget[]> {
    const key = `${scope}:${subjectId}`;
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.budgets;
    const budgets = this.list(scope, subjectId);
    const entry: CacheEntry = { budgets, expiresAt: now + this.#cacheTtlMs };
    this.#cache.set(key, entry);
    budgets.then(
      (list) => {
        entry.known = list;
      },
      () => this.#cache.delete(key),
    );
    if (this.#cache.size > 10_000) {
      for (const [k, entry] of this.#cache) if (entry.expiresAt <= now) this.#cache.delete(k);
    }
    return budgets;
  }

  async list(scope: LimitScope, subjectId: string): Promise<Budget[]> {
    const rows = await this.#db
      .selectFrom('budgets')
      .select(['scope', 'subject_id', 'period', 'limit_usd', 'limit_tokens'])
      .where('scope', '=', scope)
      .where('subject_id', '=', subjectId)
      .orderBy('period')
      .execute();
    return rows.map((r) => ({
      scope: r.scope,
      subjectId: r.subject_id,
      period: r.period,
      limitUsd: r.limit_usd === null ? null : Number(r.limit_usd),
      limitTokens: r.limit_tokens === null ? null : Number(r.limit_tokens),
    }));
  }

  /** Creates or replaces the subject's budget for the period. */
  async set(budget: Budget): Promise<void> {
    if (budget.limitUsd !== null && !(budget.limitUsd >= 0)) throw new Error('limitUsd must be ≥ 0 or null');
    if (budget.limitTokens !== null && !(Number.isInteger(budget.limitTokens) && budget.limitTokens >= 0))
      throw new Error('limitTokens must be an integer ≥ 0 or null');
    const now = nowIso();
    const insert = this.#db.insertInto('budgets').values({
      id: newId('bud'),
      scope: budget.scope,
      subject_id: budget.subjectId,
      period: budget.period,
      limit_usd: budget.limitUsd,
      limit_tokens: budget.limitTokens,
      created_at: now,
      updated_at: now,
    });
    await onConflictUpdate(this.#db, insert, ['scope', 'subject_id', 'period'], {
      limit_usd: budget.limitUsd,
      limit_tokens: budget.limitTokens,
      updated_at: now,
    }).execute();
    await this.#changed(budget.scope, budget.subjectId);
  }

  async remove(scope: LimitScope, subjectId: string, period?: BudgetPeriod): Promise<number> {
    let query = this.#db.deleteFrom('budgets').where('scope', '=', scope).where('subject_id', '=', subjectId);
    if (period) query = query.where('period', '=', period);
    const result = await query.executeTakeFirst();
    await this.#changed(scope, subjectId);
    return Number(result.numDeletedRows);
  }
}
