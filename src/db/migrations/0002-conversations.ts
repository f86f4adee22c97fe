import { type Kysely, sql } from 'kysely';
import { columnTypes, dropIndex } from '../portable.js';

/**
 * The conversation API's own tables: idempotency keys for the POSTs that start generations, and one row
 * per generation (who owns it, which message it writes, how it ended) so any replica can authorise a
 * reconnection and answer for a finished generation after its in-memory events are gone.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('key', t.key, (c) => c.notNull())
    // What the key was used for (route and target) and a digest of the request body: a different
    // request under the same key is refused instead of silently answered with another request's result.
    .addColumn('scope', t.short, (c) => c.notNull())
    .addColumn('request_hash', t.key, (c) => c.notNull())
    .addColumn('result', t.body, (c) => c.notNull())
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('expires_at', t.key, (c) => c.notNull())
    .addUniqueConstraint('idempotency_keys_user_key_unique', ['user_id', 'key'])
    .execute();
  await db.schema
    .createIndex('idempotency_keys_expires_idx')
    .on('idempotency_keys')
    .column('expires_at')
    .execute();

  await db.schema
    .createTable('generations')
    .addColumn('id', t.key, (c) => c.primaryKey())
    .addColumn('user_id', t.key, (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('conversation_id', t.key, (c) =>
      c.notNull().references('conversations.id').onDelete('cascade'),
    )
    .addColumn('message_id', t.key, (c) => c.notNull().references('messages.id').onDelete('cascade'))
    .addColumn('user_message_id', t.key, (c) => c.references('messages.id').onDelete('set null'))
    .addColumn('kind', t.short, (c) => c.notNull().check(sqlIn('kind', ['reply', 'regenerate', 'continue'])))
    .addColumn('model', t.body, (c) => c.notNull())
    .addColumn('status', t.short, (c) =>
      c.notNull().check(sqlIn('status', ['running', 'complete', 'partial', 'error'])),
    )
    .addColumn('error', t.body)
    // The number of the generation's last event (`done` or `error`), so a late reconnection gets it again.
    .addColumn('last_event_id', 'integer')
    .addColumn('created_at', t.key, (c) => c.notNull())
    .addColumn('updated_at', t.key, (c) => c.notNull())
    .addColumn('finished_at', t.key)
    .execute();
  await db.schema.createIndex('generations_message_idx').on('generations').column('message_id').execute();
  await db.schema
    .createIndex('generations_status_idx')
    .on('generations')
    .columns(['status', 'updated_at'])
    .execute();
  // Conversation search walks a user's messages; branch views load a conversation's (id, parent_id).
  await db.schema
    .createIndex('messages_conversation_parent_idx')
    .on('messages')
    .columns(['conversation_id', 'parent_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await dropIndex(db, 'messages_conversation_parent_idx', 'messages');
  await db.schema.dropTable('generations').execute();
  await db.schema.dropTable('idempotency_keys').execute();
}

function sqlIn(column: string, values: string[]) {
  return sql`${sql.ref(column)} in (${sql.join(values.map((v) => sql.lit(v)))})`;
}
