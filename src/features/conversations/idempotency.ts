import { createHash } from 'node:crypto';
import { AppError } from '../../core/errors.js';
import { newId, nowIso } from '../../core/ids.js';
import type { ConversationDb } from './tables.js';

/** What a replay answers with: the ids the first request created. */
export interface GenerationRef {
  conversation_id: string;
  generation_id: string;
  user_message_id: string | null;
  message_id: string;
}

export interface IdempotencyClaim {
  key: string;
  scope: string;
  requestHash: string;
}

const DEFAULT_TTL_MS = 24 * 3600_000;

/**
 * Idempotency keys of the POSTs that start generations, unique per (user, key). The key is written in the
 * same transaction as the messages it created, so a key exists exactly when its messages do; a concurrent
 * duplicate fails on the unique constraint and replays the winner's result.
 */
export class IdempotencyStore {
  constructor(
    private readonly db: ConversationDb,
    private readonly ttlMs = DEFAULT_TTL_MS,
  ) {}

  static claim(key: string, scope: string, request: unknown): IdempotencyClaim {
    const requestHash = createHash('sha256').update(JSON.stringify(request)).digest('hex');
    return { key, scope, requestHash };
  }

  /** The stored result for this key, or undefined. A key used for another request is refused (422). */
  async find(userId: string, claim: IdempotencyClaim): Promise<GenerationRef | undefined> {
    const row = await this.db
      .selectFrom('idempotency_keys')
      .selectAll()
      .where('user_id', '=', userId)
      .where('key', '=', claim.key)
      .executeTakeFirst();
    if (!row) return undefined;
    if (row.expires_at <= nowIso()) {
      await this.db.deleteFrom('idempotency_keys').where('id', '=', row.id).execute();
      return undefined;
    }
    if (row.scope !== claim.scope || row.request_hash !== claim.requestHash) {
      throw new AppError(
        'idempotency_key_reused',
        'this Idempotency-Key was already used for a different request; use a new key',
        { param: 'Idempotency-Key' },
      );
    }
    return JSON.parse(row.result) as GenerationRef;
  }

  /** Inside the transaction that creates the messages; throws a unique violation when the key is taken. */
  async insert(
    db: Pick<ConversationDb, 'insertInto'>,
    userId: string,
    claim: IdempotencyClaim,
    ref: GenerationRef,
  ): Promise<void> {
    const now = Date.now();
    await db
      .insertInto('idempotency_keys')
      .values({
        id: newId('idk'),
        user_id: userId,
        key: claim.key,
        scope: claim.scope,
        request_hash: claim.requestHash,
        result: JSON.stringify(ref),
        created_at: new Date(now).toISOString(),
        expires_at: new Date(now + this.ttlMs).toISOString(),
      })
      .execute();
  }

  async deleteExpired(): Promise<number> {
    const result = await this.db
      .deleteFrom('idempotency_keys')
      .where('expires_at', '<=', nowIso())
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
