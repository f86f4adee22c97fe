import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import { onConflictUpdate } from '../../db/portable.js';
import { LIMITS_CACHE_TTL_MS, type LimitStoreOptions } from './budget-store.js';
import type { LimitInvalidations } from './invalidations.js';
import { LIMIT_NAMES, type LimitName, type LimitScope, type LimitsDb, withLimitsTables } from './tables.js';

export type LimitValues = Partial<Record<LimitName, number>>;

/** What the rate limiter needs from the overrides: the values set for one key or user. */
export interface LimitOverrideSource {
  get(scope: LimitScope, subjectId: string): Promise<LimitValues>;
}

export interface LimitOverride {
  scope: LimitScope;
  subjectId: string;
  limitName: LimitName;
  /** Negative: unlimited. 0: nothing allowed (a suspended key). */
  value: number;
}

/**
 * Per key and per user limit overrides (`limit_overrides`). Reads are cached per subject: a change applies
 * at once here and, through `invalidations` (Redis pub/sub), on every replica; `cacheTtlMs` (default 5 s)
 * bounds staleness only while pub/sub is down.
 */
export class LimitOverrideStore implements LimitOverrideSource {
  readonly #db: LimitsDb;
  readonly #cacheTtlMs: number;
  readonly #cache = new Map<string, { values: Promise<LimitValues>; expiresAt: number }>();
  readonly #invalidations: LimitInvalidations | undefined;

  constructor(db: Db, options: LimitStoreOptions = {}) {
    this.#db = withLimitsTables(db);
    this.#cacheTtlMs = options.cacheTtlMs ?? LIMITS_CACHE_TTL_MS;
    this.#invalidations = options.invalidations;
    this.#invalidations?.onChange((setting, scope, subjectId) => {
      if (setting === 'overrides') this.#forget(scope, subjectId);
    });
  }

  #forget(scope: LimitScope, subjectId: string) {
    if (subjectId === '*') {
      for (const key of this.#cache.keys()) if (key.startsWith(`${scope}:`)) this.#cache.delete(key);
    } else this.#cache.delete(`${scope}:${subjectId}`);
  }

  async #changed(scope: LimitScope, subjectId: string) {
    if (this.#invalidations) await this.#invalidations.announce('overrides', scope, subjectId);
    else this.#forget(scope, subjectId);
  }

  get(scope: LimitScope, subjectId: string): Promise<LimitValues> {
    const key = `${scope}:${subjectId}`;
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit && hit.expiresAt > now) return hit.values;
    const values = this.#load(scope, subjectId);
    this.#cache.set(key, { values, expiresAt: now + this.#cacheTtlMs });
    // A failed read is not cached: the next request asks the database again.
    values.catch(() => this.#cache.delete(key));
    if (this.#cache.size > 10_000) this.#evictExpired(now);
    return values;
  }

  async #load(scope: LimitScope, subjectId: string): Promise<LimitValues> {
    const rows = await this.#db
      .selectFrom('limit_overrides')
      .select(['limit_name', 'value'])
      .where('scope', '=', scope)
      .where('subject_id', '=', subjectId)
      .execute();
    const values: LimitValues = {};
    for (const row of rows) values[row.limit_name] = Number(row.value);
    return values;
  }

  #evictExpired(now: number) {
    for (const [key, entry] of this.#cache) if (entry.expiresAt <= now) this.#cache.delete(key);
  }

  async list(scope: LimitScope, subjectId: string): Promise<LimitOverride[]> {
    const rows = await this.#db
      .selectFrom('limit_overrides')
      .select(['scope', 'subject_id', 'limit_name', 'value'])
      .where('scope', '=', scope)
      .where('subject_id', '=', subjectId)
      .orderBy('limit_name')
      .execute();
    return rows.map((r) => ({
      scope: r.scope,
      subjectId: r.subject_id,
      limitName: r.limit_name,
      value: Number(r.value),
    }));
  }

  async set(override: LimitOverride): Promise<void> {
    if (!LIMIT_NAMES.includes(override.limitName)) throw new Error(`unknown limit ${override.limitName}`);
    if (!Number.isInteger(override.value)) throw new Error('a limit override is an integer');
    const now = nowIso();
    const insert = this.#db.insertInto('limit_overrides').values({
      id: newId('lim'),
      scope: override.scope,
      subject_id: override.subjectId,
      limit_name: override.limitName,
      value: override.value,
      created_at: now,
      updated_at: now,
    });
    await onConflictUpdate(this.#db, insert, ['scope', 'subject_id', 'limit_name'], {
      value: override.value,
      updated_at: now,
    }).execute();
    await this.#changed(override.scope, override.subjectId);
  }

  /** Removes one override (or all of the subject's); the defaults apply again. */
  async remove(scope: LimitScope, subjectId: string, limitName?: LimitName): Promise<number> {
    let query = this.#db
      .deleteFrom('limit_overrides')
      .where('scope', '=', scope)
      .where('subject_id', '=', subjectId);
    if (limitName) query = query.where('limit_name', '=', limitName);
    const result = await query.executeTakeFirst();
    await this.#changed(scope, subjectId);
    return Number(result.numDeletedRows);
  }
}
