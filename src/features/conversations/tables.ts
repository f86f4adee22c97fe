import type { Db } from '../../db/database.js';

/** Tables added by migration 0002-conversations, typed here so the shared schema file stays untouched. */
export interface IdempotencyKeysTable {
  id: string;
  user_id: string;
  key: string;
  scope: string;
  request_hash: string;
  /** JSON of GenerationRef: the ids a replay answers with. */
  result: string;
  created_at: string;
  expires_at: string;
}

export type GenerationKind = 'reply' | 'regenerate' | 'continue';
export type GenerationStatus = 'running' | 'complete' | 'partial' | 'error';

export interface GenerationsTable {
  id: string;
  user_id: string;
  conversation_id: string;
  message_id: string;
  user_message_id: string | null;
  kind: GenerationKind;
  model: string;
  status: GenerationStatus;
  error: string | null;
  last_event_id: number | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

// A type alias, not an interface: Kysely's withTables needs an index-signature-compatible record.
export type ConversationTables = {
  idempotency_keys: IdempotencyKeysTable;
  generations: GenerationsTable;
};

export type ConversationDb = ReturnType<typeof withConversationTables>;

export const withConversationTables = (db: Db) => db.withTables<ConversationTables>();
