import type { Generated } from 'kysely';

/**
 * Table types shared by SQLite and PostgreSQL. Timestamps are ISO-8601 UTC strings in both dialects: they
 * sort correctly as text and `substr(created_at, 1, 10)` gives the day for roll-ups on either database.
 * JSON columns are text holding JSON.
 */
export interface UsersTable {
  id: string;
  email: string;
  password_hash: string;
  role: 'admin' | 'user';
  display_name: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
  /** A self sign-up whose address is not confirmed yet (REQUIRE_EMAIL_VERIFICATION): it cannot sign in. */
  verification_pending_at: string | null;
  /** Deleted by an admin (migration 0020): a tombstone kept so usage rows keep their owner. */
  deleted_at: string | null;
}

export interface RefreshTokensTable {
  id: string;
  user_id: string;
  family_id: string;
  token_hash: string;
  expires_at: string;
  revoked_at: string | null;
  created_at: string;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  created_at: string;
  /** 1: every request with this key may be answered from the response cache. */
  cache_responses: Generated<number>;
  /** The model names the key may call, a JSON array (migration 0020); null: every model. */
  allowed_models: string | null;
}

export interface AssistantsTable {
  id: string;
  /** null for a shared assistant managed by admins. */
  owner_id: string | null;
  name: string;
  description: string | null;
  system_prompt: string;
  model: string;
  params: string;
  created_at: string;
  updated_at: string;
}

export interface ConversationsTable {
  id: string;
  user_id: string;
  assistant_id: string | null;
  title: string | null;
  model: string | null;
  active_leaf_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface MessagesTable {
  id: string;
  conversation_id: string;
  parent_id: string | null;
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  status: 'complete' | 'streaming' | 'partial' | 'error';
  model: string | null;
  error: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  created_at: string;
  updated_at: string;
  /** JSON of the reply's tool calls (OpenAI's shape), null or absent when it made none (0008). */
  tool_calls?: string | null;
}

export interface UsageRecordsTable {
  id: string;
  request_id: string;
  user_id: string | null;
  api_key_id: string | null;
  model: string;
  provider: string | null;
  deployment: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: number;
  latency_ms: number | null;
  ttft_ms: number | null;
  status: string;
  cached: number;
  retries: number;
  fallback: number;
  created_at: string;
  /** The client protocol (see UsageProtocol); the database defaults it to `chat_completions`. */
  protocol: Generated<string>;
}

export interface AuditEventsTable {
  id: string;
  created_at: string;
  /** e.g. auth.login, POST /api/users/:id */
  action: string;
  outcome: 'success' | 'failure';
  status_code: number;
  actor_user_id: string | null;
  actor_key_id: string | null;
  actor_via: string | null;
  /** The :id the action was about, when the route has one. */
  target_id: string | null;
  /** The account an auth event was about (the email typed at login), never a password or token. */
  subject: string | null;
  ip: string | null;
  request_id: string | null;
}

/** Stored Responses API responses (migration 0014); the JSON columns are text on every database. */
export interface ResponsesTable {
  id: string;
  user_id: string | null;
  api_key_id: string | null;
  model: string;
  previous_response_id: string | null;
  input_items: string;
  output_items: string;
  response: string;
  created_at: string;
}

export interface MailOutboxTable {
  id: string;
  kind: string;
  to_address: string;
  subject: string;
  text_body: string;
  html_body: string;
  status: 'pending' | 'sending' | 'sent' | 'failed';
  attempts: Generated<number>;
  next_attempt_at: string;
  claimed_by: string | null;
  lease_until: string | null;
  last_error: string | null;
  created_at: string;
  sent_at: string | null;
}

export interface MailTokensTable {
  id: string;
  purpose: 'reset' | 'verify' | 'invite';
  token_hash: string;
  user_id: string | null;
  email: string;
  role: 'admin' | 'user' | null;
  created_by: string | null;
  expires_at: string;
  used_at: string | null;
  created_at: string;
}

export interface Database {
  mail_outbox: MailOutboxTable;
  mail_tokens: MailTokensTable;
  audit_events: AuditEventsTable;
  users: UsersTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  assistants: AssistantsTable;
  conversations: ConversationsTable;
  messages: MessagesTable;
  usage_records: UsageRecordsTable;
  responses: ResponsesTable;
}

export type Dialect = 'sqlite' | 'postgres' | 'mysql';
// Generated is re-exported for later tables with database-side defaults.
export type { Generated };
