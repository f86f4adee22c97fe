import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Expand-only (issue 23, admin round two):
 * - `api_keys.allowed_models`: the model names a key may call, as a JSON array; null for every model.
 * - `users.deleted_at`: an account deleted by an admin. The row stays as a tombstone (address and password
 *   blanked) so the usage ledger and roll-ups keep naming whose spend they hold; its keys stay revoked for the
 *   same reason, while conversations, assistants, files and sessions are removed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema.alterTable('api_keys').addColumn('allowed_models', t.body).execute();
  await db.schema.alterTable('users').addColumn('deleted_at', 'varchar(32)').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('deleted_at').execute();
  await db.schema.alterTable('api_keys').dropColumn('allowed_models').execute();
}
