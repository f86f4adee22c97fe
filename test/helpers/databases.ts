import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** Tells scripts/run-tests.mjs that a suite needing this service really ran (CI fails otherwise). */
export function markSuiteRan(service: 'postgres' | 'redis') {
  const dir = process.env.COLLOQUY_SUITE_MARKERS;
  if (dir) writeFileSync(path.join(dir, service), 'ran');
}

export interface TestDatabase {
  dialect: 'sqlite' | 'postgres';
  /** A DATABASE_URL for this database. */
  url: string;
  drop(): Promise<void>;
}

export const postgresAvailable = () => Boolean(process.env.TEST_DATABASE_URL);

/** The dialects storage tests run on: SQLite always, PostgreSQL when TEST_DATABASE_URL is set. */
export const DIALECTS: ('sqlite' | 'postgres')[] = postgresAvailable() ? ['sqlite', 'postgres'] : ['sqlite'];

/** A brand-new empty database: a temp SQLite file, or a fresh PostgreSQL database dropped afterwards. */
export async function createTestDatabase(dialect: 'sqlite' | 'postgres'): Promise<TestDatabase> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-test-'));
    return {
      dialect,
      url: `sqlite:${path.join(dir, 'test.db')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  markSuiteRan('postgres');
  const admin = process.env.TEST_DATABASE_URL!;
  const name = `colloquy_t_${randomBytes(6).toString('hex')}`;
  await withClient(admin, (c) => c.query(`create database ${name}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    dialect,
    url: url.toString(),
    drop: () => dropPostgresDatabase(name),
  };
}

export async function dropPostgresDatabase(name: string) {
  await withClient(process.env.TEST_DATABASE_URL!, (c) =>
    c.query(`drop database if exists ${name} with (force)`),
  );
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
