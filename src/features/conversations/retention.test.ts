import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp } from '../../../test/helpers/app.js';
import { DIALECTS } from '../../../test/helpers/databases.js';
import { pruneConversations } from './retention.js';

for (const dialect of DIALECTS) {
  describe(`conversation retention (${dialect})`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp({ dialect, env: { DEMO_WORD_DELAY_MS: '0' } });
    });
    after(() => t.close());

    it('deletes conversations untouched for longer than the retention, with their messages, in batches', async () => {
      const user = await createUser(t, 'retention@example.com');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await t.inject({
          method: 'POST',
          url: '/api/conversations',
          headers: bearer(user.accessToken),
          payload: { model: 'demo' },
        });
        assert.equal(res.statusCode, 201, res.body);
        ids.push((res.json() as { id: string }).id);
      }
      const sent = await t.inject({
        method: 'POST',
        url: `/api/conversations/${ids[0]}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: 'old message', stream: false },
      });
      assert.ok(sent.statusCode < 300, sent.body);
      // Age four of them by 40 days.
      const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
      await t.database.db
        .updateTable('conversations')
        .set({ updated_at: old })
        .where('id', 'in', ids.slice(0, 4))
        .execute();

      assert.equal(await pruneConversations(t.database.db, { retentionDays: 0 }), 0, '0 keeps everything');
      assert.equal(await pruneConversations(t.database.db, { retentionDays: 30, batchSize: 3 }), 4);
      const left = await t.database.db.selectFrom('conversations').select('id').execute();
      assert.deepEqual(
        left.map((r) => r.id),
        [ids[4]],
      );
      const orphans = await t.database.db
        .selectFrom('messages')
        .select('id')
        .where('conversation_id', '=', ids[0]!)
        .execute();
      assert.equal(orphans.length, 0, 'messages went with their conversation');
    });
  });
}
