import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Uploaded files (issue 24): the metadata and, for documents, the text extracted once at upload; the bytes
 * live in the storage (disk or S3) under `storage_key`. `conversation_id` is set when a message first uses
 * the file: the file is deleted with that conversation (retention). `message_files` says which files each
 * message carried, so a later turn sends them to the model again.
 *
 * Written with explicit varchar(n) types before MySQL support; those stay for every dialect (SQLite and
 * PostgreSQL keep the DDL they shipped with, and each fits MySQL's key limits). Only the free-text columns
 * go through `t.body`: MySQL's `text` holds 64 KB and a document's extracted text reaches a million
 * characters.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('files')
    .addColumn('id', 'varchar(255)', (c) => c.primaryKey())
    .addColumn('user_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('filename', t.body, (c) => c.notNull())
    .addColumn('extension', 'varchar(16)', (c) => c.notNull())
    .addColumn('media_type', 'varchar(255)', (c) => c.notNull())
    .addColumn('kind', 'varchar(16)', (c) => c.notNull())
    .addColumn('bytes', 'bigint', (c) => c.notNull())
    .addColumn('sha256', 'varchar(64)', (c) => c.notNull())
    .addColumn('storage_key', 'varchar(255)', (c) => c.notNull())
    .addColumn('width', 'integer')
    .addColumn('height', 'integer')
    .addColumn('text', t.body)
    .addColumn('text_chars', 'integer')
    .addColumn('text_truncated', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('conversation_id', 'varchar(255)')
    .addColumn('created_at', 'varchar(64)', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('files_user_idx').on('files').columns(['user_id', 'created_at']).execute();
  await db.schema.createIndex('files_conversation_idx').on('files').column('conversation_id').execute();
  await db.schema
    .createTable('message_files')
    .addColumn('message_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('file_id', 'varchar(255)', (c) => c.notNull())
    .addColumn('position', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('message_files_pk', ['message_id', 'file_id'])
    .execute();
  await db.schema.createIndex('message_files_file_idx').on('message_files').column('file_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('message_files').execute();
  await db.schema.dropTable('files').execute();
}
