import { type Migration, type MigrationResultSet, Migrator, sql } from 'kysely';
import type { Db } from './database.js';
import * as initial from './migrations/0001-initial.js';
import * as conversations from './migrations/0002-conversations.js';
import * as limits from './migrations/0003-limits.js';
import * as audit from './migrations/0004-audit.js';
import * as keyCache from './migrations/0005-key-cache-opt-in.js';
import * as limitRejections from './migrations/0006-limit-rejections.js';

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

export interface MigrationStatus {
  applied: string[];
  pending: string[];
  /** Applied in the database but unknown to this code (a newer release ran): never undone automatically. */
  unknown: string[];
}

export async function migrationStatus(db: Db): Promise<MigrationStatus> {
  const all = await createMigrator(db).getMigrations();
  const known = new Set(Object.keys(MIGRATIONS));
  const applied = all.filter((m) => m.executedAt).map((m) => m.name);
  const pending = all.filter((m) => !m.executedAt).map((m) => m.name);
  const unknown = await appliedNames(db).then((names) => names.filter((n) => !known.has(n)));
  return { applied, pending, unknown };
}

async function appliedNames(db: Db): Promise<string[]> {
  try {
    const { rows } = await sql<{ name: string }>`select name from schema_migrations`.execute(db);
    return rows.map((r) => r.name);
  } catch {
    return []; // no migration table yet: nothing applied
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
    if (/no such table|does not exist/i.test((err as Error).message)) return null;
    throw err;
  }
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

export async function migrateUp(db: Db): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateToLatest());
}

export async function migrateDown(db: Db): Promise<string[]> {
  return unwrap(await createMigrator(db).migrateDown());
}
