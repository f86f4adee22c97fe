import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDatabaseUrl } from '../../src/config/database-url.js';
import { openDatabase } from '../../src/db/database.js';
import { bearer, startTestApp, TEST_MASTER_KEY } from '../helpers/app.js';
import { createTestDatabase, DIALECTS } from '../helpers/databases.js';

for (const dialect of DIALECTS) {
  describe(`usage ledger across a graceful stop (${dialect})`, () => {
    it('every answered request has its usage row once the app has closed, none lost in a batch', async () => {
      const testDb = await createTestDatabase(dialect);
      try {
        const t = await startTestApp({ testDb });
        const body = { model: 'demo', messages: [{ role: 'user', content: 'hello there' }] };
        const responses = await Promise.all(
          Array.from({ length: 40 }, () =>
            t.inject({
              method: 'POST',
              url: '/v1/chat/completions',
              headers: bearer(TEST_MASTER_KEY),
              payload: body,
            }),
          ),
        );
        assert.ok(responses.every((r) => r.statusCode === 200));
        const ids = responses.map((r) => String(r.headers['x-request-id']));
        // Closed at once: rows still waiting for their batch are written before the database closes.
        await t.close();

        const database = openDatabase({
          ...parseDatabaseUrl(testDb.url),
          poolSize: 2,
          poolTimeoutMs: 5_000,
          busyTimeoutMs: 5_000,
        });
        try {
          const rows = await database.db
            .selectFrom('usage_records')
            .select(['request_id', 'status', 'completion_tokens'])
            .where('request_id', 'in', ids)
            .execute();
          assert.equal(rows.length, 40);
          assert.ok(rows.every((r) => r.status === 'ok' && r.completion_tokens > 0));
        } finally {
          await database.close();
        }
      } finally {
        await testDb.drop();
      }
    });
  });
}
