import { type Migration, type MigrationResultSet, Migrator, sql } from 'kysely';
import type { Db } from './database.js';
import * as initial from './migrations/0001-initial.js';
import * as conversations from './migrations/0002-conversations.js';
import * as limits from './migrations/0003-limits.js';
import * as audit from './migrations/0004-audit.js';
import * as keyCache from './migrations/0005-key-cache-opt-in.js';
import * as limitRejections from './migrations/0006-limit-rejections.js';
import * as messageToolCalls from './migrations/0008-message-tool-calls.js';
import * as usageProtocol from './migrations/0009-usage-protocol.js';
import * as responses from './migrations/0014-responses.js';
import * as guardrailEvents from './migrations/0015-guardrail-events.js';
import * as files from './migrations/0016-files.js';
import * as mail from './migrations/0017-mail.js';
import * as guardrails from './migrations/0018-guardrails.js';
import * as conversationFlags from './migrations/0019-conversation-flags.js';
import * as keyModelsUserDeletion from './migrations/0020-key-models-user-deletion.js';

/**
 * Migrations are compiled into the build (no directory scanning), named by a zero-padded version so they
 * sort. Append only: a shipped migration is never edited; a change is a new one (expand, then contract).
 */
export const MIGRATIONS: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-conversations': conversations,
  '0003-limits': limits,
  '0004-audit': audit,
  '0005-key-cache-opt-in': keyCache,
  '0006-limit-rejections': limitRejections,
  '0008-message-tool-calls': messageToolCalls,
  '0009-usage-protocol': usageProtocol,
  '0014-responses': responses,
  '0015-guardrail-events': guardrailEvents,
  '0016-files': files,
  '0017-mail': mail,
  '0018-guardrails': guardrails,
  '0019-conversation-flags': conversationFlags,
  '0020-key-models-user-deletion': keyModelsUserDeletion,
};

/** The schema version this code needs: readiness fails and production serve refuses below it. */
export const REQUIRED_SCHEMA_VERSION = Object.keys(MIGRATIONS).sort().at(-1)!;

export function createMigrator(db: Db): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: async () => MIGRATIONS },
    migrationTableName: 'schema_migrations',
    migrationLockTableName: 'schema_migrations_lock',
  });
}

/**
 * Expand/contract (docs/deployment.md): a migration only adds (tables, nullable columns, indexes) unless its
 * name ends in `-contract` (e.g. `0014-drop-legacy-title-contract`), which marks it as removing or changing
 * what an older release reads or writes. An older release therefore runs on a newer schema whose extra
 * migrations are all expand ones, and refuses one that holds a contract migration it does not know. The
 * marker is in the name because the older release has only the database to learn it from.
 */
export const isContractMigration = (name: string) => /-contract$/.test(name);

export interface MigrationStatus {
  /** This release's migrations that are applied. */
  applied: string[];
  /** This release's migrations not applied yet. */
  pending: string[];
  /** Applied in the database but unknown to this code (a newer release ran): never undone automatically. */
  unknown: string[];
  /** Whether this release may serve on the schema as it is once its pending migrations are applied. */
  compatible: boolean;
  /** Why not (compatible: false), or how it stands, in one sentence for logs, readiness and `migrate status`. */
  summary: string;
}

export async function migrationStatus(db: Db): Promise<MigrationStatus> {
  const known = Object.keys(MIGRATIONS).sort();
  const done = await appliedNames(db);
  const applied = known.filter((n) => done.has(n));
  const pending = known.filter((n) => !done.has(n));
  const unknown = [...done].filter((n) => !(n in MIGRATIONS)).sort();
  return { applied, pending, unknown, ...verdict(pending, unknown) };
}

function verdict(pending: string[], unknown: string[]): { compatible: boolean; summary: string } {
  const contract = unknown.filter(isContractMigration);
  if (contract.length) {
    return {
      compatible: false,
      summary:
        `the database has contract migration(s) of a newer release (${contract.join(', ')}) that change what ` +
        `this release (schema ${REQUIRED_SCHEMA_VERSION}) uses: run that newer release, or restore a backup taken before it migrated`,
    };
  }
  if (unknown.length && pending.length) {
    // A newer release migrated without this release's pending ones: the schema is not one this code was
    // written for, and applying them out of order on top of a newer schema is not something to guess at.
    return {
      compatible: false,
      summary:
        `this release's migration(s) ${pending.join(', ')} were never applied, yet a newer release's were ` +
        `(${unknown.join(', ')}): run a release that includes both, or restore a backup`,
    };
  }
  if (unknown.length) {
    return {
      compatible: true,
      summary:
        `the database is at a newer, compatible schema (expand-only migrations of a newer release: ${unknown.join(', ')}); ` +
        `this release (schema ${REQUIRED_SCHEMA_VERSION}) runs on it and applies nothing`,
    };
  }
  if (pending.length) {
    return { compatible: true, summary: `${pending.length} pending: ${pending.join(', ')}` };
  }
  return { compatible: true, summary: 'up to date' };
}

async function appliedNames(db: Db): Promise<Set<string>> {
  try {
    const { rows } = await sql<{ name: string }>`select name from schema_migrations`.execute(db);
    return new Set(rows.map((r) => r.name));
  } catch (err) {
    if (isMissingTable(err)) return new Set(); // no migration table yet: nothing applied
    throw err;
  }
}

/** The newest applied migration, or null on an empty database. Throws when the database cannot answer. */
export async function currentSchemaVersion(db: Db): Promise<string | null> {
  try {
    const { rows } = await sql<{ v: string | null }>`select max(name) as v from schema_migrations`.execute(
      db,
    );
    return rows[0]?.v ?? null;
  } catch (err) {
    if (isMissingTable(err)) return null;
    throw err;
  }
}

/**
 * No migration table yet (an empty database), as opposed to a database that cannot answer: a dropped
 * PostgreSQL database also says "does not exist" (SQLSTATE 3D000; MySQL: ER_BAD_DB_ERROR), and must not
 * read as an empty schema.
 */
function isMissingTable(err: unknown): boolean {
  const { code, message } = err as { code?: unknown; message?: string };
  return (
    code === '42P01' ||
    code === 'ER_NO_SUCH_TABLE' ||
    (code === 'SQLITE_ERROR' && /no such table/i.test(message ?? ''))
  );
}

export class MigrationError extends Error {}

function unwrap(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName;
    throw new MigrationError(
      `migration ${failed ?? '(unknown)'} failed: ${(result.error as Error).message}`,
      {
        cause: result.error,
      },
    );
  }
  return (result.results ?? []).map((r) => r.migrationName);
}

/**
 * Applies this release's pending migrations. On a newer, compatible schema there is nothing to apply and it
 * succeeds (a rollback's one-shot `migrate` step must not stop the older release from starting); it refuses
 * only a schema this release cannot run on (see migrationStatus).
 */
export async function migrateUp(db: Db): Promise<string[]> {
  const status = await migrationStatus(db);
  if (!status.compatible) throw new MigrationError(status.summary);
  // Kysely would call a database holding migrations it was not given "corrupted".
  if (status.unknown.length) return [];
  return unwrap(await createMigrator(db).migrateToLatest());
}

export async function migrateDown(db: Db): Promise<string[]> {
  const { unknown } = await migrationStatus(db);
  if (unknown.length) {
    throw new MigrationError(
      `the newest applied migration (${unknown.at(-1)}) belongs to a newer release: undo it with that release`,
    );
  }
  return unwrap(await createMigrator(db).migrateDown());
}
