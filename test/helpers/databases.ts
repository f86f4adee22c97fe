import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';

/** Tells scripts/run-tests.mjs that a suite needing this service really ran (CI fails otherwise). */
export function markSuiteRan(service: 'postgres' | 'redis' | 'mysql') {
  const dir = process.env.COLLOQUY_SUITE_MARKERS;
  if (dir) writeFileSync(path.join(dir, service), 'ran');
}

export type TestDialect = 'sqlite' | 'postgres' | 'mysql';

export interface TestDatabase {
  dialect: TestDialect;
  /** A DATABASE_URL for this database. */
  url: string;
  drop(): Promise<void>;
}

export const postgresAvailable = () => Boolean(process.env.TEST_DATABASE_URL);

export const mysqlAvailable = () => Boolean(process.env.TEST_MYSQL_URL);

/**
 * The dialects storage tests run on: SQLite always, PostgreSQL when TEST_DATABASE_URL is set, MySQL /
 * MariaDB when TEST_MYSQL_URL is set (mysql://root@127.0.0.1:3306/test: a user that may create databases).
 */
export const DIALECTS: TestDialect[] = [
  'sqlite',
  ...(postgresAvailable() ? (['postgres'] as const) : []),
  ...(mysqlAvailable() ? (['mysql'] as const) : []),
];

/**
 * A brand-new empty database: a temp SQLite file, or a fresh PostgreSQL / MySQL database dropped afterwards.
 */
export async function createTestDatabase(dialect: TestDialect): Promise<TestDatabase> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-test-'));
    return {
      dialect,
      url: `sqlite:${path.join(dir, 'test.db')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  if (dialect === 'mysql') return createMysqlDatabase();
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

/** A database of the test's own on the TEST_MYSQL_URL server, utf8mb4 like a production one. */
async function createMysqlDatabase(): Promise<TestDatabase> {
  markSuiteRan('mysql');
  const admin = process.env.TEST_MYSQL_URL!;
  const name = `colloquy_t_${randomBytes(6).toString('hex')}`;
  await withMysql(admin, (c) => c.query(`create database ${name} character set utf8mb4`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    dialect: 'mysql',
    url: url.toString(),
    drop: () => withMysql(admin, (c) => c.query(`drop database if exists ${name}`)).then(() => {}),
  };
}

async function withMysql<T>(url: string, fn: (connection: mysql.Connection) => Promise<T>): Promise<T> {
  const connection = await mysql.createConnection(url);
  try {
    return await fn(connection);
  } finally {
    await connection.end();
  }
}
