import type { Kysely } from 'kysely';
import { columnTypes } from '../portable.js';

/**
 * Guardrails managed through the admin API (issue 22), beside the routing file's: one row per guardrail,
 * attached globally or to an assistant, an API key or a role (`subject_id` '' for global: a unique key
 * without nullable columns works the same on every dialect). `rule` is the guardrail's JSON (check, stage,
 * action and the check's fields); `position` orders a scope's guardrails; a disabled row switches off the
 * guardrail of that name inherited from a wider scope.
 *
 * Written with explicit varchar(n) types before MySQL support; those stay for every dialect (SQLite and
 * PostgreSQL keep the DDL they shipped with; the unique key's 399 characters fit InnoDB's 3072 bytes).
 * `rule` goes through `t.body` (`longtext` on MySQL).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const t = columnTypes(db);
  await db.schema
    .createTable('guardrails')
    .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
    .addColumn('name', 'varchar(128)', (c) => c.notNull())
    .addColumn('scope', 'varchar(16)', (c) => c.notNull())
    .addColumn('subject_id', 'varchar(255)', (c) => c.notNull().defaultTo(''))
    .addColumn('position', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('enabled', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('rule', t.body, (c) => c.notNull())
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
    .addUniqueConstraint('guardrails_scope_subject_name_uq', ['scope', 'subject_id', 'name'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('guardrails').execute();
}
