import { type Kysely, sql } from 'kysely';
import { columnTypes, isMysql, textDefault } from '../portable.js';

// Portable column types: `text` ids and ISO timestamps, `integer` counts, `double precision` money (on MySQL:
// varchar / longtext, see ../portable.ts).
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  // MySQL compares strings case-insensitively by default: ids, emails and key hashes must compare (and sort)
  // byte for byte, as they do on SQLite and PostgreSQL. The tables created from here on inherit it.
  if (isMysql(db)) await sql`alter database character set utf8mb4 collate utf8mb4_bin`.execute(db);
  await db.schema
    .createTable('users')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('email', t.key, (c) => c.notNull().unique())
    .addColumn('password_hash', t.key, (c) => c.notNull())
    .addColumn('role', t.short, (c) => c.notNull().check(sqlIn('role', ['admin', 'user'])))
    .addColumn('display_name', t.body)
    .addColumn('disabled_at', t.key)
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('refresh_tokens')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('family_id', t.key, (c) => c.notNull())
    .addColumn('token_hash', t.key, (c) => c.notNull().unique())
    .addColumn('expires_at', t.key, (c) => c.notNull())
    .addColumn('revoked_at', t.key)
    .addColumn('created_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('refresh_tokens_user_idx').on('refresh_tokens').column('user_id').execute();
  await db.schema.createIndex('refresh_tokens_family_idx').on('refresh_tokens').column('family_id').execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', t.key, (c) => c.notNull())
    .addColumn('prefix', t.key, (c) => c.notNull())
    .addColumn('key_hash', t.key, (c) => c.notNull().unique())
    .addColumn('expires_at', t.key)
    .addColumn('last_used_at', t.key)
    .addColumn('revoked_at', t.key)
    .addColumn('created_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('api_keys_user_idx')
    .on('api_keys')
    .columns(['user_id', 'created_at'])
    .execute();

  await db.schema
    .createTable('assistants')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('owner_id', t.key, (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('name', t.key, (c) => c.notNull())
    .addColumn('description', t.body)
    .addColumn('system_prompt', t.body, (c) => c.notNull())
    .addColumn('model', t.body, (c) => c.notNull())
    .addColumn('params', t.body, (c) => c.notNull().defaultTo(textDefault(db, '{}')))
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('assistants_owner_idx').on('assistants').column('owner_id').execute();

  await db.schema
    .createTable('conversations')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('assistant_id', t.key, (c) => c.references('assistants.id').onDelete('set null'))
    .addColumn('title', t.body)
    .addColumn('model', t.body)
    .addColumn('active_leaf_id', t.key)
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .execute();
  // Conversation lists are per user, newest first, paginated by (updated_at, id).
  await db.schema
    .createIndex('conversations_user_updated_idx')
    .on('conversations')
    .columns(['user_id', 'updated_at', 'id'])
    .execute();

  await db.schema
    .createTable('messages')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('conversation_id', t.key, (c) =>
      c.notNull().references('conversations.id').onDelete('cascade'),
    )
    // InnoDB stops cascading deletes 15 levels deep, and a conversation is a chain of replies far longer:
    // there a deleted message clears its children's link, and the conversation's own cascade removes them.
    .addColumn('parent_id', t.key, (c) =>
      c.references('messages.id').onDelete(isMysql(db) ? 'set null' : 'cascade'),
    )
    .addColumn('role', t.short, (c) =>
      c.notNull().check(sqlIn('role', ['system', 'user', 'assistant', 'tool'])),
    )
    .addColumn('content', t.body, (c) => c.notNull())
    .addColumn('status', t.short, (c) =>
      c.notNull().check(sqlIn('status', ['complete', 'streaming', 'partial', 'error'])),
    )
    .addColumn('model', t.body)
    .addColumn('error', t.body)
    .addColumn('prompt_tokens', 'integer')
    .addColumn('completion_tokens', 'integer')
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('messages_conversation_idx')
    .on('messages')
    .columns(['conversation_id', 'id'])
    .execute();
  await db.schema.createIndex('messages_parent_idx').on('messages').column('parent_id').execute();
  // Start-up sweeps orphaned "streaming" messages after a crash.
  await db.schema.createIndex('messages_status_idx').on('messages').column('status').execute();

  await db.schema
    .createTable('usage_records')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('request_id', t.key, (c) => c.notNull().unique())
    .addColumn('user_id', t.key, (c) => c.references('users.id').onDelete('set null'))
    .addColumn('api_key_id', t.key, (c) => c.references('api_keys.id').onDelete('set null'))
    .addColumn('model', t.body, (c) => c.notNull())
    .addColumn('provider', t.key)
    .addColumn('deployment', t.key)
    .addColumn('prompt_tokens', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('completion_tokens', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('cost_usd', 'double precision', (c) => c.notNull().defaultTo(0))
    .addColumn('latency_ms', 'integer')
    .addColumn('ttft_ms', 'integer')
    .addColumn('status', t.short, (c) => c.notNull())
    .addColumn('cached', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('retries', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('fallback', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', t.key, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('usage_user_created_idx')
    .on('usage_records')
    .columns(['user_id', 'created_at'])
    .execute();
  await db.schema
    .createIndex('usage_key_created_idx')
    .on('usage_records')
    .columns(['api_key_id', 'created_at'])
    .execute();
  await db.schema.createIndex('usage_created_idx').on('usage_records').column('created_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'usage_records',
    'messages',
    'conversations',
    'assistants',
    'api_keys',
    'refresh_tokens',
    'users',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}

function sqlIn(column: string, values: string[]) {
  return sql`${sql.ref(column)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
}
