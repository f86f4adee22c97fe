import { createHash, randomBytes } from 'node:crypto';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

export type RotateResult =
  | { ok: true; userId: string; token: string }
  | { ok: false; reason: 'unknown' | 'expired' | 'reused' };

/**
 * Opaque refresh tokens, stored only as SHA-256 hashes, rotated on every use. Each login starts a family;
 * presenting an already-rotated token means it was stolen or replayed, so the whole family is revoked.
 */
export class RefreshTokenStore {
  constructor(
    private readonly db: Db,
    private readonly ttlSeconds: number,
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
    return { ok: true, userId: row.user_id, token: await this.issue(row.user_id, row.family_id) };
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

  async revokeAllForUser(userId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: nowIso() })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  private async revokeFamily(familyId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: nowIso() })
      .where('family_id', '=', familyId)
      .where('revoked_at', 'is', null)
      .execute();
  }
}
