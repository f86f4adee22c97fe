import { createHash, randomBytes } from 'node:crypto';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { SessionCache } from './session-cache.js';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export type RotateResult =
  | { ok: true; userId: string; token: string; familyId: string }
  | { ok: false; reason: 'unknown' | 'expired' | 'reused' };

/**
 * Opaque refresh tokens, stored only as SHA-256 hashes, rotated on every use. Each login starts a family;
 * presenting an already-rotated token means it was stolen or replayed, so the whole family is revoked.
 *
 * A family is a login session: its access tokens carry its id (`sid`) and work only while the family has a
 * token not yet revoked (logout, reuse, a new password or a disabled account end it; see isSessionActive).
 */
export class RefreshTokenStore {
  constructor(
    private readonly db: Db,
    private readonly ttlSeconds: number,
    private readonly sessions?: SessionCache,
  ) {}

  async issue(userId: string, familyId: string = newId('rtf')): Promise<string> {
    const token = `rt_${randomBytes(32).toString('base64url')}`;
    const now = new Date();
    await this.db
      .insertInto('refresh_tokens')
      .values({
        id: newId('rt'),
        user_id: userId,
        family_id: familyId,
        token_hash: sha256(token),
        expires_at: new Date(now.getTime() + this.ttlSeconds * 1000).toISOString(),
        revoked_at: null,
        created_at: now.toISOString(),
      })
      .execute();
    return token;
  }

  async rotate(token: string): Promise<RotateResult> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .selectAll()
      .where('token_hash', '=', sha256(token))
      .executeTakeFirst();
    if (!row) return { ok: false, reason: 'unknown' };
    if (row.revoked_at) {
      await this.revokeFamily(row.family_id);
      return { ok: false, reason: 'reused' };
    }
    if (row.expires_at <= nowIso()) return { ok: false, reason: 'expired' };
    // The successor is written before the old token is claimed, so the family always has a live token while
    // it rotates: an access token checked in between is not refused (isSessionActive).
    const successor = await this.issue(row.user_id, row.family_id);
    // The conditional update makes rotation single-use even when two requests race with the same token.
    const claimed = await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: nowIso() })
      .where('id', '=', row.id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) {
      await this.revokeFamily(row.family_id);
      return { ok: false, reason: 'reused' };
    }
    return { ok: true, userId: row.user_id, token: successor, familyId: row.family_id };
  }

  /** Whether a login session still has a token not revoked: its access tokens work only while it does. */
  isSessionActive(familyId: string, userId: string): Promise<boolean> {
    const load = async () =>
      (await this.db
        .selectFrom('refresh_tokens')
        .select('id')
        .where('family_id', '=', familyId)
        .where('revoked_at', 'is', null)
        .limit(1)
        .executeTakeFirst()) !== undefined;
    return this.sessions ? this.sessions.isActive(familyId, userId, load) : load();
  }

  /** Logout: revokes the family the token belongs to. Unknown tokens are ignored (logout is idempotent). */
  async revoke(token: string): Promise<void> {
    const row = await this.db
      .selectFrom('refresh_tokens')
      .select('family_id')
      .where('token_hash', '=', sha256(token))
      .executeTakeFirst();
    if (row) await this.revokeFamily(row.family_id);
  }

  /** Signs every session of a user out, but the one given in `except` (the caller's own, on a new password). */
  async revokeAllForUser(userId: string, options: { except?: string | undefined } = {}): Promise<void> {
    let update = this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: nowIso() })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null);
    if (options.except) update = update.where('family_id', '!=', options.except);
    await update.execute();
    await this.sessions?.forgetUser(userId);
  }

  private async revokeFamily(familyId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: nowIso() })
      .where('family_id', '=', familyId)
      .where('revoked_at', 'is', null)
      .execute();
    await this.sessions?.forgetSession(familyId);
  }
}
