import type { Selectable } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { ApiKeysTable } from '../../db/schema.js';
import type { Principal } from '../auth/principal.js';
import type { Role } from '../users/store.js';
import { generateApiKey } from './key-format.js';
import type { UsableKeyCache } from './usable-key-cache.js';

export type ApiKeyRow = Selectable<ApiKeysTable>;

export interface PublicApiKey {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  created_at: string;
  cache_responses: boolean;
  allowed_models: string[] | null;
}

/** The stored JSON array of model names; null (or anything unreadable) for every model. */
export function parseAllowedModels(json: string | null): string[] | null {
  if (json === null) return null;
  const parsed = JSON.parse(json) as unknown;
  return Array.isArray(parsed) ? parsed.map(String) : null;
}

export const toPublicApiKey = ({
  key_hash: _hash,
  cache_responses,
  allowed_models,
  ...rest
}: ApiKeyRow): PublicApiKey => ({
  ...rest,
  cache_responses: cache_responses === 1,
  allowed_models: parseAllowedModels(allowed_models),
});

export interface KeyOwner {
  keyId: string;
  userId: string;
  role: Role;
  lastUsedAt: string | null;
  /** lastUsedAt parsed once (epoch ms), so checking it per request parses no date. */
  lastUsedMs?: number;
  /** When the key stops working (ISO), null for never: a cached answer must not outlive it. */
  expiresAt?: string | null;
  cacheResponses?: boolean;
  /** The model names the key may call; null or absent: every model. */
  allowedModels?: string[] | null;
  /**
   * The principal this owner resolves to, built on first use and shared by every request while the owner
   * is cached (it is never mutated): a cached key costs no allocation to authenticate.
   */
  principal?: Principal;
}

/** last_used_at is written at most once a minute per key, so authenticated traffic does not become writes. */
const LAST_USED_RESOLUTION_MS = 60_000;

export class ApiKeyStore {
  constructor(
    private readonly db: Db,
    /** The server passes one so authentication does not read the database on every request. */
    private readonly cache?: UsableKeyCache,
  ) {}

  async create(input: {
    userId: string;
    name: string;
    expiresAt: string | null;
    cacheResponses?: boolean;
    allowedModels?: string[] | null;
  }) {
    const { key, prefix, hash } = generateApiKey();
    const row: ApiKeyRow = {
      id: newId('key'),
      user_id: input.userId,
      name: input.name,
      prefix,
      key_hash: hash,
      expires_at: input.expiresAt,
      last_used_at: null,
      revoked_at: null,
      created_at: nowIso(),
      cache_responses: input.cacheResponses ? 1 : 0,
      allowed_models: input.allowedModels ? JSON.stringify(input.allowedModels) : null,
    };
    await this.db.insertInto('api_keys').values(row).execute();
    return { row, key };
  }

  list(options: {
    userId?: string | undefined;
    limit: number;
    after?: string | undefined;
  }): Promise<ApiKeyRow[]> {
    let query = this.db.selectFrom('api_keys').selectAll().orderBy('id', 'desc').limit(options.limit);
    if (options.userId) query = query.where('user_id', '=', options.userId);
    if (options.after) query = query.where('id', '<', options.after);
    return query.execute();
  }

  findById(id: string): Promise<ApiKeyRow | undefined> {
    return this.db.selectFrom('api_keys').selectAll().where('id', '=', id).executeTakeFirst();
  }

  /**
   * The owner of a usable key: not revoked, not expired, owner not disabled. With a cache, an answer may be
   * up to its TTL old, except that revoking through this store (or `forgetUser`) takes effect at once.
   */
  findUsable(hash: string): Promise<KeyOwner | undefined> {
    if (!this.cache) return this.#readUsable(hash);
    return this.cache.get(hash, () => this.#readUsable(hash));
  }

  /** The cached owner of a usable key, or undefined when it must be read (`findUsable`). */
  peekUsable(hash: string): KeyOwner | undefined {
    return this.cache?.peek(hash);
  }

  /** A user was disabled or changed role: their keys are read again on next use, on every replica. */
  async forgetUser(userId: string): Promise<void> {
    await this.cache?.forgetUser(userId);
  }

  /** Whether the key with this id still works: not revoked, not expired, its owner not disabled. */
  async isUsable(keyId: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('users', 'users.id', 'api_keys.user_id')
      .select('api_keys.id')
      .where('api_keys.id', '=', keyId)
      .where('api_keys.revoked_at', 'is', null)
      .where('users.disabled_at', 'is', null)
      .where((eb) => eb.or([eb('api_keys.expires_at', 'is', null), eb('api_keys.expires_at', '>', nowIso())]))
      .executeTakeFirst();
    return row !== undefined;
  }

  async #readUsable(hash: string): Promise<KeyOwner | undefined> {
    const now = nowIso();
    const row = await this.db
      .selectFrom('api_keys')
      .innerJoin('users', 'users.id', 'api_keys.user_id')
      .select([
        'api_keys.id as keyId',
        'api_keys.user_id as userId',
        'users.role as role',
        'api_keys.last_used_at',
        'api_keys.expires_at',
        'api_keys.cache_responses',
        'api_keys.allowed_models',
      ])
      .where('api_keys.key_hash', '=', hash)
      .where('api_keys.revoked_at', 'is', null)
      .where('users.disabled_at', 'is', null)
      .where((eb) => eb.or([eb('api_keys.expires_at', 'is', null), eb('api_keys.expires_at', '>', now)]))
      .executeTakeFirst();
    return (
      row && {
        keyId: row.keyId,
        userId: row.userId,
        role: row.role,
        lastUsedAt: row.last_used_at,
        expiresAt: row.expires_at,
        cacheResponses: row.cache_responses === 1,
        allowedModels: parseAllowedModels(row.allowed_models),
      }
    );
  }

  /** Whether `touch` would write: false for a key used within the last minute (the hot path's case). */
  needsTouch(owner: KeyOwner, now = Date.now()): boolean {
    if (owner.lastUsedAt === null) return true;
    owner.lastUsedMs ??= Date.parse(owner.lastUsedAt);
    return now - owner.lastUsedMs >= LAST_USED_RESOLUTION_MS;
  }

  async touch(owner: KeyOwner): Promise<void> {
    const now = Date.now();
    if (!this.needsTouch(owner, now)) return;
    // Set before the write: the owner may be the cached one, shared by the requests running meanwhile.
    owner.lastUsedAt = new Date(now).toISOString();
    owner.lastUsedMs = now;
    await this.db
      .updateTable('api_keys')
      .set({ last_used_at: owner.lastUsedAt })
      .where('id', '=', owner.keyId)
      .execute();
  }

  /** Restricts a key to these models (null: every model), here and on every replica at once. */
  async setAllowedModels(id: string, models: string[] | null): Promise<ApiKeyRow | undefined> {
    await this.db
      .updateTable('api_keys')
      .set({ allowed_models: models === null ? null : JSON.stringify(models) })
      .where('id', '=', id)
      .execute();
    await this.cache?.forgetKey(id);
    return this.findById(id);
  }

  /** Revokes every key of a user (their account is deleted); the cache forgets them on every replica. */
  async revokeAllOf(userId: string): Promise<void> {
    await this.db
      .updateTable('api_keys')
      .set({ revoked_at: nowIso() })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .execute();
    await this.cache?.forgetUser(userId);
  }

  async revoke(id: string): Promise<ApiKeyRow | undefined> {
    await this.db
      .updateTable('api_keys')
      .set({ revoked_at: nowIso() })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .execute();
    await this.cache?.forgetKey(id);
    return this.findById(id);
  }
}
