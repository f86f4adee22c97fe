import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../config/database-url.js';
import { ApiKeyStore } from '../features/api-keys/store.js';
import { UserStore } from '../features/users/store.js';
import { type DatabaseHandle, isUniqueViolation, openDatabase } from './database.js';
import {
  currentSchemaVersion,
  MIGRATIONS,
  MigrationError,
  migrateDown,
  migrateUp,
  migrationStatus,
  REQUIRED_SCHEMA_VERSION,
} from './migrator.js';

const APP_TABLES = [
  'api_keys',
  'assistants',
  'conversations',
  'messages',
  'refresh_tokens',
  'usage_records',
  'users',
];
const ALL = Object.keys(MIGRATIONS).sort();

async function tableNames(database: DatabaseHandle): Promise<string[]> {
  const tables = await database.db.introspection.getTables();
  return tables.filter((t) => !t.isView).map((t) => t.name);
}

for (const dialect of DIALECTS) {
  describe(dialect, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase({
        ...parseDatabaseUrl(testDb.url),
        poolSize: 4,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
    });
    after(async () => {
      await database?.close().catch(() => {});
      await testDb?.drop();
    });

    it('REQUIRED_SCHEMA_VERSION is the newest migration', () => {
      assert.ok(ALL.length > 0);
      assert.equal(REQUIRED_SCHEMA_VERSION, ALL.at(-1));
      assert.ok(ALL.includes('0001-initial'));
    });

    it('status on an empty database shows every migration pending', async () => {
      assert.equal(await currentSchemaVersion(database.db), null);
      const { applied, pending, unknown } = await migrationStatus(database.db);
      assert.deepEqual({ applied, pending, unknown }, { applied: [], pending: ALL, unknown: [] });
      assert.deepEqual(
        (await tableNames(database)).filter((t) => APP_TABLES.includes(t)),
        [],
      );
    });

    it('up applies every migration and creates the tables', async () => {
      assert.deepEqual(await migrateUp(database.db), ALL);
      const tables = await tableNames(database);
      for (const table of APP_TABLES) assert.ok(tables.includes(table), `table ${table} exists`);
      const { applied, pending, unknown, compatible, summary } = await migrationStatus(database.db);
      assert.deepEqual({ applied, pending, unknown }, { applied: ALL, pending: [], unknown: [] });
      assert.equal(compatible, true);
      assert.equal(summary, 'up to date');
    });

    it('currentSchemaVersion matches REQUIRED_SCHEMA_VERSION after up', async () => {
      assert.equal(await currentSchemaVersion(database.db), REQUIRED_SCHEMA_VERSION);
    });

    it('a second up is a no-op', async () => {
      assert.deepEqual(await migrateUp(database.db), []);
      assert.deepEqual((await migrationStatus(database.db)).pending, []);
    });

    it('enforces the unique email constraint', async () => {
      const users = new UserStore(database.db);
      await users.create({ email: 'dup@example.com', passwordHash: 'h', role: 'user' });
      let caught: unknown;
      try {
        // Emails are normalised, so a differently-cased address is the same account.
        await users.create({ email: 'DUP@example.com', passwordHash: 'h', role: 'user' });
      } catch (err) {
        caught = err;
      }
      assert.ok(caught, 'the duplicate insert failed');
      assert.equal(isUniqueViolation(caught), true, String(caught));
      assert.equal(isUniqueViolation(new Error('something else')), false);
    });

    it('deleting a user cascades to its api_keys (foreign keys are enforced)', async () => {
      const users = new UserStore(database.db);
      const keys = new ApiKeyStore(database.db);
      const owner = await users.create({ email: 'owner@example.com', passwordHash: 'h', role: 'user' });
      const other = await users.create({ email: 'other@example.com', passwordHash: 'h', role: 'user' });
      await keys.create({ userId: owner.id, name: 'a', expiresAt: null });
      await keys.create({ userId: owner.id, name: 'b', expiresAt: null });
      const kept = await keys.create({ userId: other.id, name: 'c', expiresAt: null });
      assert.equal((await keys.list({ userId: owner.id, limit: 10 })).length, 2);

      await database.db.deleteFrom('users').where('id', '=', owner.id).execute();

      assert.deepEqual(await keys.list({ userId: owner.id, limit: 10 }), []);
      assert.ok(await keys.findById(kept.row.id), 'another user’s key is untouched');
    });

    it('rejects an api key for a user that does not exist', async () => {
      const keys = new ApiKeyStore(database.db);
      await assert.rejects(keys.create({ userId: 'usr_missing', name: 'x', expiresAt: null }));
    });

    it('reports migrations applied by a newer release as unknown', async () => {
      const future = '9999-from-the-future';
      await sql`insert into schema_migrations (name, timestamp) values (${future}, ${new Date().toISOString()})`.execute(
        database.db,
      );
      try {
        const status = await migrationStatus(database.db);
        assert.deepEqual(status.unknown, [future]);
        assert.deepEqual(status.pending, []);
      } finally {
        await sql`delete from schema_migrations where name = ${future}`.execute(database.db);
      }
      assert.deepEqual((await migrationStatus(database.db)).unknown, []);
    });

    // Issue 19, item 7: after a rollback to an older image, compose's one-shot `migrate up` failed ("corrupted
    // migrations") and no replica started, while `migrate status` said "up to date".
    describe('an older release on a newer schema (expand/contract)', () => {
      const insert = (name: string) =>
        sql`insert into schema_migrations (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
          database.db,
        );
      const remove = (name: string) =>
        sql`delete from schema_migrations where name = ${name}`.execute(database.db);

      it('newer expand-only migrations: up applies nothing and succeeds; status says the schema is newer', async () => {
        const future = '9999-from-the-future';
        await insert(future);
        try {
          assert.deepEqual(await migrateUp(database.db), []);
          const status = await migrationStatus(database.db);
          assert.equal(status.compatible, true);
          assert.deepEqual(status.unknown, [future]);
          assert.deepEqual(status.pending, []);
          assert.notEqual(status.summary, 'up to date');
          assert.match(status.summary, /newer, compatible schema.*9999-from-the-future/);
          await assert.rejects(migrateDown(database.db), /belongs to a newer release/);
          assert.deepEqual((await migrationStatus(database.db)).applied, ALL, 'nothing was undone');
        } finally {
          await remove(future);
        }
      });

      it('a newer contract migration: up refuses and says why', async () => {
        const contract = '9999-drop-old-columns-contract';
        await insert(contract);
        try {
          await assert.rejects(migrateUp(database.db), (err: Error) => {
            assert.ok(err instanceof MigrationError);
            assert.match(err.message, /contract migration.*9999-drop-old-columns-contract/);
            return true;
          });
          const status = await migrationStatus(database.db);
          assert.equal(status.compatible, false);
          assert.match(status.summary, /contract/);
        } finally {
          await remove(contract);
        }
      });

      it('a pending migration of this release under a newer one: up refuses without running anything', async () => {
        const future = '9999-from-the-future';
        const skipped = REQUIRED_SCHEMA_VERSION;
        await remove(skipped); // as if a newer release had migrated without it
        await insert(future);
        try {
          await assert.rejects(migrateUp(database.db), new RegExp(`${skipped} were never applied`));
          const status = await migrationStatus(database.db);
          assert.equal(status.compatible, false);
          assert.deepEqual(status.pending, [skipped]);
        } finally {
          await remove(future);
          await insert(skipped);
        }
        assert.deepEqual(await migrateUp(database.db), [], 'back to the schema this release made');
      });
    });

    it('down undoes one migration at a time, newest first, until the tables are gone', async () => {
      for (const name of [...ALL].reverse()) assert.deepEqual(await migrateDown(database.db), [name]);
      const tables = await tableNames(database);
      for (const table of APP_TABLES) assert.ok(!tables.includes(table), `table ${table} dropped`);
      assert.equal(await currentSchemaVersion(database.db), null);
      const { applied, pending, unknown } = await migrationStatus(database.db);
      assert.deepEqual({ applied, pending, unknown }, { applied: [], pending: ALL, unknown: [] });
      assert.deepEqual(await migrateDown(database.db), [], 'nothing more to undo');
    });

    it('up works again after down', async () => {
      assert.deepEqual(await migrateUp(database.db), ALL);
      const tables = await tableNames(database);
      for (const table of APP_TABLES) assert.ok(tables.includes(table), `table ${table} exists`);
      assert.equal(await currentSchemaVersion(database.db), REQUIRED_SCHEMA_VERSION);
      // The data went with the tables.
      assert.equal(await new UserStore(database.db).findByEmail('dup@example.com'), undefined);
    });

    if (dialect === 'sqlite') {
      it('uses WAL journaling with foreign keys on', async () => {
        const journal = await sql<{ journal_mode: string }>`pragma journal_mode`.execute(database.db);
        assert.equal(journal.rows[0]?.journal_mode, 'wal');
        const fk = await sql<{ foreign_keys: number }>`pragma foreign_keys`.execute(database.db);
        assert.equal(fk.rows[0]?.foreign_keys, 1);
      });
    }
  });
}
