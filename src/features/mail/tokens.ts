import { createHash, randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { MailTokensTable } from '../../db/schema.js';

export type MailTokenRow = Selectable<MailTokensTable>;
export type TokenPurpose = MailTokensTable['purpose'];

/** How long each kind of mailed link works. */
export const TOKEN_TTL_MINUTES: Record<TokenPurpose, number> = {
  reset: 30,
  verify: 24 * 60,
  invite: 7 * 24 * 60,
};

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

/**
 * The single-use tokens mailed links carry. Only their SHA-256 is stored (a leaked table opens no account);
 * 256 random bits each, so guessing is hopeless and needs no throttle. `db` is the caller's transaction.
 */
export async function issueToken(
  db: Db,
  input: {
    purpose: TokenPurpose;
    email: string;
    userId?: string | null;
    role?: 'admin' | 'user' | null;
    createdBy?: string | null;
  },
): Promise<{ token: string; row: MailTokenRow }> {
  const token = randomBytes(32).toString('base64url');
  const now = Date.now();
  const row: MailTokenRow = {
    id: newId('mtk'),
    purpose: input.purpose,
    token_hash: sha256(token),
    user_id: input.userId ?? null,
    email: input.email,
    role: input.role ?? null,
    created_by: input.createdBy ?? null,
    expires_at: new Date(now + TOKEN_TTL_MINUTES[input.purpose] * 60_000).toISOString(),
    used_at: null,
    created_at: new Date(now).toISOString(),
  };
  await db.insertInto('mail_tokens').values(row).execute();
  return { token, row };
}

/** The token's row while it is unused and unexpired (nothing is changed), else undefined. */
export function findUsableToken(
  db: Db,
  purpose: TokenPurpose,
  token: string,
): Promise<MailTokenRow | undefined> {
  return db
    .selectFrom('mail_tokens')
    .selectAll()
    .where('token_hash', '=', sha256(token))
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('expires_at', '>', nowIso())
    .executeTakeFirst();
}

/**
 * Uses the token up: a conditional update, so of two requests racing with the same token exactly one gets
 * the row. Returns undefined when it is unknown, used, expired or for another purpose.
 */
export async function consumeToken(
  db: Db,
  purpose: TokenPurpose,
  token: string,
): Promise<MailTokenRow | undefined> {
  const row = await findUsableToken(db, purpose, token);
  if (!row) return undefined;
  const usedAt = nowIso();
  const result = await db
    .updateTable('mail_tokens')
    .set({ used_at: usedAt })
    .where('id', '=', row.id)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1 ? { ...row, used_at: usedAt } : undefined;
}
