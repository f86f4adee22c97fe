import type { Db } from '../../db/database.js';

/** Ids per query: well under SQLite's and PostgreSQL's bound-parameter limits. */
const CHUNK = 500;

/**
 * Names people recognise for the ids of a usage breakdown: a user's email, a key's name and prefix. An id
 * whose row is gone (a deleted user) keeps no label.
 */
export async function usageLabels(
  db: Db,
  groupBy: 'api_key' | 'user',
  ids: string[],
): Promise<Map<string, string>> {
  const labels = new Map<string, string>();
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    if (groupBy === 'user') {
      const rows = await db.selectFrom('users').select(['id', 'email']).where('id', 'in', chunk).execute();
      for (const r of rows) labels.set(r.id, r.email);
    } else {
      const rows = await db
        .selectFrom('api_keys')
        .select(['id', 'name', 'prefix', 'revoked_at'])
        .where('id', 'in', chunk)
        .execute();
      for (const r of rows) labels.set(r.id, `${r.name} (${r.prefix}…)${r.revoked_at ? ', revoked' : ''}`);
    }
  }
  return labels;
}
