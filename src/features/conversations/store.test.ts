import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CompiledQuery } from 'kysely';
import { startTestApp, type TestApp } from '../../../test/helpers/app.js';
import { branchQuery } from './store.js';

describe('reading a branch (sqlite)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp();
  });
  after(() => t.close());

  it('looks each message up by its primary key, never scanning the messages table', async () => {
    // SQLite plans without statistics (nobody runs ANALYZE): a join written the other way round scanned the
    // whole table on every turn, and turns slowed as the database grew (seen in bench scenario 5).
    const compiled = branchQuery('conv', 'leaf').compile(t.database.db);
    const { rows } = await t.database.db.executeQuery<{ detail: string }>(
      CompiledQuery.raw(`explain query plan ${compiled.sql}`, [...compiled.parameters]),
    );
    const plan = rows.map((row) => row.detail);
    const onMessages = plan.filter((detail) => /\b(messages|m)\b/.test(detail));
    assert.ok(onMessages.length >= 2, plan.join('\n'));
    for (const detail of onMessages)
      assert.match(detail, /^SEARCH .* USING INDEX sqlite_autoindex_messages_1 \(id=\?\)/);
  });
});
