import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { type DatabaseHandle, openDatabase } from '../../db/database.js';
import { migrateUp } from '../../db/migrator.js';
import { GuardrailEventRecorder, withGuardrailEvents } from './events.js';

for (const dialect of DIALECTS) {
  describe(`guardrail events (${dialect})`, () => {
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
      await migrateUp(database.db);
    });
    after(async () => {
      await database.close().catch(() => {});
      await testDb.drop();
    });

    it('writes verdicts in one batch, with their category and never the matched text', async () => {
      const recorder = new GuardrailEventRecorder(database.db, { flushIntervalMs: 60_000 });
      try {
        for (let i = 0; i < 3; i++)
          recorder.record(`req-${i}`, {
            guardrail: 'pii',
            stage: 'input',
            action: 'redact',
            category: 'email',
          });
        recorder.record('req-3', {
          guardrail: 'house-rules',
          stage: 'output',
          action: 'block',
          category: 'deny',
        });
        const table = () => withGuardrailEvents(database.db).selectFrom('guardrail_events').selectAll();
        // Nothing is written on the request's path: only at the flush.
        assert.equal((await table().execute()).length, 0);
        await recorder.flush();
        const rows = await table().orderBy('request_id').execute();
        assert.deepEqual(
          rows.map((r) => [r.request_id, r.guardrail, r.stage, r.action, r.category]),
          [
            ['req-0', 'pii', 'input', 'redact', 'email'],
            ['req-1', 'pii', 'input', 'redact', 'email'],
            ['req-2', 'pii', 'input', 'redact', 'email'],
            ['req-3', 'house-rules', 'output', 'block', 'deny'],
          ],
        );
        assert.deepEqual(Object.keys(rows[0]!).sort(), [
          'action',
          'category',
          'created_at',
          'guardrail',
          'id',
          'request_id',
          'stage',
        ]);
      } finally {
        await recorder.close();
      }
    });
  });
}
