import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { firstStatementDeadlocks } from '../../../test/helpers/deadlock.js';
import { loadConfig } from '../../config/load-config.js';
import { newId, nowIso } from '../../core/ids.js';
import { createLogger } from '../../core/logger.js';
import { type DatabaseHandle, openDatabase } from '../../db/database.js';
import { migrateUp } from '../../db/migrator.js';
import type { AuditEventsTable } from '../../db/schema.js';
import { AuditWriter } from './writer.js';

const event = (i: number): AuditEventsTable => ({
  id: newId('aud'),
  created_at: nowIso(),
  action: 'POST /v1/chat/completions',
  outcome: 'success',
  status_code: 200,
  actor_user_id: null,
  actor_key_id: null,
  actor_via: 'master_key',
  target_id: null,
  subject: null,
  ip: '127.0.0.1',
  request_id: `req-${i}`,
});

for (const dialect of DIALECTS) {
  describe(`AuditWriter (${dialect})`, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;
    let statements = 0;
    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase(
        loadConfig({ SECRET_KEY: 'x'.repeat(40), DATABASE_URL: testDb.url }, { dotenvDir: null }).database,
      );
      await migrateUp(database.db);
      database.observeQueries(() => statements++);
    });
    after(async () => {
      await database?.close();
      await testDb?.drop();
    });

    it('writes events queued together in shared INSERTs (one per 200), every event kept', async () => {
      const silent = createLogger({ level: 'silent', format: 'json', destination: { write: () => {} } });
      const writer = new AuditWriter(database.db, silent);
      const before = statements;
      for (let i = 0; i < 250; i++) writer.add(event(i));
      await writer.flush();
      assert.equal(statements - before, 2, 'two statements for 250 events (200 + 50), not 250');
      const rows = await database.db.selectFrom('audit_events').select('request_id').execute();
      assert.equal(rows.length, 250);
      assert.deepEqual(new Set(rows.map((r) => r.request_id)).size, 250);
    });

    it('writes what is waiting on close; a refused row is logged and costs the others nothing', async () => {
      const lines: string[] = [];
      const logger = createLogger({
        level: 'error',
        format: 'json',
        destination: { write: (l: string) => void lines.push(l) },
      });
      const writer = new AuditWriter(database.db, logger);
      const duplicate = event(1001);
      writer.add(duplicate);
      writer.add({ ...duplicate, request_id: 'req-1002' }); // the same primary key: refused
      writer.add(event(1003));
      await writer.close();
      const rows = await database.db
        .selectFrom('audit_events')
        .select('request_id')
        .where('request_id', 'in', ['req-1001', 'req-1002', 'req-1003'])
        .execute();
      assert.deepEqual(rows.map((r) => r.request_id).sort(), ['req-1001', 'req-1003']);
      assert.match(lines.join(''), /could not write the audit event/);
      assert.match(lines.join(''), /req-1002/);
    });

    it('a batch the database rolls back (deadlock) is written on its second try, every event kept', async () => {
      const lines: { msg: string }[] = [];
      const logger = createLogger({
        level: 'warn',
        format: 'json',
        destination: { write: (l: string) => void lines.push(JSON.parse(l)) },
      });
      const deadlocking = firstStatementDeadlocks(database.db);
      const writer = new AuditWriter(deadlocking.db, logger);
      for (let i = 2001; i <= 2003; i++) writer.add(event(i));
      await writer.flush();
      const rows = await database.db
        .selectFrom('audit_events')
        .select('request_id')
        .where('request_id', 'in', ['req-2001', 'req-2002', 'req-2003'])
        .execute();
      assert.equal(rows.length, 3, `every event written: ${JSON.stringify(lines)}`);
      assert.equal(deadlocking.statements(), 2, 'the batch again, not row by row');
      assert.deepEqual(
        lines.map((l) => l.msg),
        ['audit batch rolled back by the database: retrying it'],
      );
    });
  });
}
