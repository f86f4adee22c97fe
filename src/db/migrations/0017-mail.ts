import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Mail (issue 24): the outbox every mail is sent from, the single-use tokens mailed links carry (password
 * reset, address verification, invitations), and the mark of an account whose address is not confirmed yet.
 *
 * Written with explicit varchar(n) types before MySQL support; those stay for every dialect (SQLite and
 * PostgreSQL keep the DDL they shipped with; the indexed ones fit InnoDB's 3072-byte key limit). The
 * free-text columns go through `t.body` (`text` elsewhere, `longtext` on MySQL, whose `text` holds 64 KB).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('mail_outbox')
    .addColumn('id', 'varchar(255)', (c) => c.primaryKey())
    .addColumn('kind', 'varchar(64)', (c) => c.notNull())
    .addColumn('to_address', 'varchar(320)', (c) => c.notNull())
    .addColumn('subject', t.body, (c) => c.notNull())
    // Bodies hold single-use links: they are blanked once the mail is sent or given up.
    .addColumn('text_body', t.body, (c) => c.notNull())
    .addColumn('html_body', t.body, (c) => c.notNull())
    // pending → sending (claimed by one replica until lease_until) → sent | failed
    .addColumn('status', 'varchar(16)', (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('claimed_by', 'varchar(255)')
    .addColumn('lease_until', 'varchar(32)')
    .addColumn('last_error', t.body)
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('sent_at', 'varchar(32)')
    .execute();
  await db.schema
    .createIndex('mail_outbox_due_idx')
    .on('mail_outbox')
    .columns(['status', 'next_attempt_at'])
    .execute();

  await db.schema
    .createTable('mail_tokens')
    .addColumn('id', 'varchar(255)', (c) => c.primaryKey())
    // reset | verify | invite
    .addColumn('purpose', 'varchar(16)', (c) => c.notNull())
    .addColumn('token_hash', 'varchar(255)', (c) => c.notNull().unique())
    .addColumn('user_id', 'varchar(255)')
    .addColumn('email', 'varchar(320)', (c) => c.notNull())
    .addColumn('role', 'varchar(16)')
    .addColumn('created_by', 'varchar(255)')
    .addColumn('expires_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('used_at', 'varchar(32)')
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('mail_tokens_email_idx').on('mail_tokens').column('email').execute();

  // Set at a self sign-up that must confirm its address (REQUIRE_EMAIL_VERIFICATION), cleared when it does.
  await db.schema.alterTable('users').addColumn('verification_pending_at', 'varchar(32)').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('users').dropColumn('verification_pending_at').execute();
  await db.schema.dropTable('mail_tokens').execute();
  await db.schema.dropTable('mail_outbox').execute();
}
