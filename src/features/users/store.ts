import type { Selectable } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { UsersTable } from '../../db/schema.js';

export type UserRow = Selectable<UsersTable>;
export type Role = UserRow['role'];

export interface PublicUser {
  id: string;
  email: string;
  role: Role;
  display_name: string | null;
  disabled: boolean;
  created_at: string;
}

export const toPublicUser = (row: UserRow): PublicUser => ({
  id: row.id,
  email: row.email,
  role: row.role,
  display_name: row.display_name,
  disabled: row.disabled_at !== null,
  created_at: row.created_at,
});

/** Emails are compared case-insensitively; stored lower-cased so the unique index enforces that. */
export const normaliseEmail = (email: string) => email.trim().toLowerCase();

export class UserStore {
  constructor(private readonly db: Db) {}

  /**
   * `verificationPending`: a self sign-up that must confirm its address before it may sign in. `db`: a
   * transaction, when the caller writes more with the account (an invitation's token, a verification mail).
   */
  async create(
    input: {
      email: string;
      passwordHash: string;
      role: Role;
      displayName?: string | null;
      verificationPending?: boolean;
    },
    db: Db = this.db,
  ) {
    const now = nowIso();
    const row: UserRow = {
      id: newId('usr'),
      email: normaliseEmail(input.email),
      password_hash: input.passwordHash,
      role: input.role,
      display_name: input.displayName ?? null,
      disabled_at: null,
      created_at: now,
      updated_at: now,
      verification_pending_at: input.verificationPending ? now : null,
      deleted_at: null,
    };
    await db.insertInto('users').values(row).execute();
    return row;
  }

  findById(id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
  }

  findByEmail(email: string): Promise<UserRow | undefined> {
    return this.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', normaliseEmail(email))
      .executeTakeFirst();
  }

  /** The email of each of these users that exists (deleted accounts included), by id: lists name owners by it. */
  async emailsOf(ids: readonly string[]): Promise<Map<string, string>> {
    const unique = [...new Set(ids)];
    if (unique.length === 0) return new Map();
    const rows = await this.db
      .selectFrom('users')
      .select(['id', 'email'])
      .where('id', 'in', unique)
      .execute();
    return new Map(rows.map((r) => [r.id, r.email]));
  }

  list(options: { limit: number; after?: string | undefined }): Promise<UserRow[]> {
    // Deleted accounts stay as tombstones for the usage they name (migration 0020): never listed.
    let query = this.db
      .selectFrom('users')
      .selectAll()
      .where('deleted_at', 'is', null)
      .orderBy('id')
      .limit(options.limit);
    if (options.after) query = query.where('id', '>', options.after);
    return query.execute();
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async update(
    id: string,
    changes: Partial<
      Pick<UserRow, 'role' | 'display_name' | 'disabled_at' | 'password_hash' | 'verification_pending_at'>
    >,
    db: Db = this.db,
  ): Promise<UserRow | undefined> {
    await db
      .updateTable('users')
      .set({ ...changes, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
    return this.findById(id);
  }
}
