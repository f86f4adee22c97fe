import { newId, nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { GuardrailChanges } from './changes.js';
import type { GuardrailConfig } from './schema.js';

export type GuardrailScope = 'global' | 'role' | 'key' | 'assistant';

export interface GuardrailsTable {
  id: string;
  name: string;
  scope: string;
  subject_id: string;
  position: number;
  enabled: number;
  rule: string;
  created_at: string;
  updated_at: string;
}

/** The table of migration 0018, typed here so the shared schema file stays untouched. */
export const withGuardrailsTable = (db: Db) => db.withTables<{ guardrails: GuardrailsTable }>();

export interface StoredGuardrail {
  id: string;
  scope: GuardrailScope;
  /** null for global. */
  subjectId: string | null;
  position: number;
  enabled: boolean;
  config: GuardrailConfig;
  createdAt: string;
  updatedAt: string;
}

export interface GuardrailInput {
  scope: GuardrailScope;
  subjectId: string | null;
  position: number;
  enabled: boolean;
  config: GuardrailConfig;
}

/** An operator keeps tens of guardrails, not thousands: a bound that keeps the in-memory copy small. */
export const MAX_GUARDRAILS = 2_000;

function fromRow(row: GuardrailsTable): StoredGuardrail {
  return {
    id: row.id,
    scope: row.scope as GuardrailScope,
    subjectId: row.subject_id === '' ? null : row.subject_id,
    position: Number(row.position),
    enabled: Number(row.enabled) === 1,
    config: { ...(JSON.parse(row.rule) as Omit<GuardrailConfig, 'name'>), name: row.name } as GuardrailConfig,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * Stored guardrails. Every replica keeps all of them in memory (requests resolve theirs without a query),
 * reloaded when any replica announces a change and every 30 s in case an announcement was lost.
 */
export class GuardrailStore {
  #all: StoredGuardrail[] = [];
  #loaded = false;
  #reloading: Promise<void> | undefined;
  #again = false;
  readonly #listeners = new Set<() => void>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly options: {
      changes?: GuardrailChanges;
      logger?: Logger | undefined;
      refreshMs?: number;
    } = {},
  ) {
    options.changes?.onChange(() => void this.reload());
    this.#timer = setInterval(() => void this.reload(), options.refreshMs ?? 30_000);
    this.#timer.unref();
  }

  /** The stored guardrails as last loaded, ordered by scope, subject and position. */
  get all(): readonly StoredGuardrail[] {
    return this.#all;
  }

  get loaded() {
    return this.#loaded;
  }

  /** Called after every reload (the resolver drops what it built from the previous copy). */
  onReload(listener: () => void) {
    this.#listeners.add(listener);
  }

  /** Reads every row again; concurrent calls share one read, and a call during a read runs one more after. */
  reload(): Promise<void> {
    if (this.#reloading) {
      this.#again = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      do {
        this.#again = false;
        try {
          const rows = await withGuardrailsTable(this.db)
            .selectFrom('guardrails')
            .selectAll()
            .orderBy('scope')
            .orderBy('subject_id')
            .orderBy('position')
            .orderBy('created_at')
            .limit(MAX_GUARDRAILS)
            .execute();
          this.#all = rows.map(fromRow);
          this.#loaded = true;
          for (const listener of this.#listeners) listener();
        } catch (err) {
          this.options.logger?.warn({ err }, 'could not load the stored guardrails; keeping the last copy');
        }
      } while (this.#again);
    })().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async list(filter: { scope?: GuardrailScope; subjectId?: string } = {}): Promise<StoredGuardrail[]> {
    let query = withGuardrailsTable(this.db).selectFrom('guardrails').selectAll();
    if (filter.scope) query = query.where('scope', '=', filter.scope);
    if (filter.subjectId !== undefined) query = query.where('subject_id', '=', filter.subjectId);
    const rows = await query
      .orderBy('scope')
      .orderBy('subject_id')
      .orderBy('position')
      .orderBy('created_at')
      .limit(MAX_GUARDRAILS)
      .execute();
    return rows.map(fromRow);
  }

  async get(id: string): Promise<StoredGuardrail | undefined> {
    const row = await withGuardrailsTable(this.db)
      .selectFrom('guardrails')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? fromRow(row) : undefined;
  }

  async count(): Promise<number> {
    const row = await withGuardrailsTable(this.db)
      .selectFrom('guardrails')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  /** Inserts; a name already used in the same scope and subject throws the database's unique violation. */
  async create(input: GuardrailInput): Promise<StoredGuardrail> {
    const now = nowIso();
    const row: GuardrailsTable = { id: newId('grd'), ...toColumns(input), created_at: now, updated_at: now };
    await withGuardrailsTable(this.db).insertInto('guardrails').values(row).execute();
    await this.#changed();
    return fromRow(row);
  }

  async update(id: string, input: GuardrailInput): Promise<StoredGuardrail | undefined> {
    const result = await withGuardrailsTable(this.db)
      .updateTable('guardrails')
      .set({ ...toColumns(input), updated_at: nowIso() })
      .where('id', '=', id)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) return undefined;
    await this.#changed();
    return this.get(id);
  }

  async remove(id: string): Promise<boolean> {
    const result = await withGuardrailsTable(this.db)
      .deleteFrom('guardrails')
      .where('id', '=', id)
      .executeTakeFirst();
    if (Number(result.numDeletedRows) === 0) return false;
    await this.#changed();
    return true;
  }

  /** This replica binds before the write is answered; the others on the announcement. */
  async #changed() {
    await this.reload();
    await this.options.changes?.announce();
  }

  close() {
    clearInterval(this.#timer);
  }
}

function toColumns(input: GuardrailInput) {
  const { name, ...rule } = input.config;
  return {
    name,
    scope: input.scope,
    subject_id: input.subjectId ?? '',
    position: input.position,
    enabled: input.enabled ? 1 : 0,
    rule: JSON.stringify(rule),
  };
}
