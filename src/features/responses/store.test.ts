import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../../../test/helpers/app.js';
import { DIALECTS } from '../../../test/helpers/databases.js';
import type { Principal } from '../auth/principal.js';
import { responseObject } from './from-internal.js';
import { ResponsesStore } from './store.js';

const caller = (userId: string | null, apiKeyId: string | null): Principal => ({
  userId,
  apiKeyId,
  role: 'user',
  via: apiKeyId ? 'api_key' : 'jwt',
});

const stored = (id: string) => ({
  id,
  inputItems: [{ type: 'message', role: 'user', content: 'hi ✓' }],
  response: responseObject(
    { id, createdAt: 1, request: { model: 'm', input: 'hi ✓' } },
    { status: 'completed', output: [] },
  ),
});

for (const dialect of DIALECTS) {
  describe(`stored Responses API responses (${dialect})`, () => {
    let t: TestApp;
    let store: ResponsesStore;
    before(async () => {
      t = await startTestApp({ dialect });
      store = new ResponsesStore(t.database.db);
    });
    after(() => t.close());

    it('saved and read back by their owner only (user and key); deleted once', async () => {
      const owner = caller('u1', 'k1');
      await store.save(owner, stored('resp_a'));
      assert.deepEqual(await store.get(owner, 'resp_a'), stored('resp_a'));
      assert.equal(await store.get(caller('u1', 'k2'), 'resp_a'), undefined, 'another key of the same user');
      assert.equal(await store.get(caller('u2', 'k1'), 'resp_a'), undefined);
      assert.equal(await store.get(caller(null, null), 'resp_a'), undefined, 'the master key');
      assert.equal(await store.delete(caller('u2', null), 'resp_a'), false);
      assert.equal(await store.delete(owner, 'resp_a'), true);
      assert.equal(await store.get(owner, 'resp_a'), undefined);
      assert.equal(await store.delete(owner, 'resp_a'), false);
    });

    it('the master key owns what it stored', async () => {
      await store.save(caller(null, null), stored('resp_m'));
      assert.ok(await store.get(caller(null, null), 'resp_m'));
      assert.equal(await store.get(caller('u1', 'k1'), 'resp_m'), undefined);
    });

    it('retention drops responses older than the retention, in batches, and keeps the rest', async () => {
      const owner = caller('u3', 'k3');
      for (const id of ['resp_old1', 'resp_old2', 'resp_old3', 'resp_new'])
        await store.save(owner, stored(id));
      const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
      await t.database.db
        .updateTable('responses')
        .set({ created_at: old })
        .where('id', 'in', ['resp_old1', 'resp_old2', 'resp_old3'])
        .execute();
      assert.equal(await store.prune({ retentionDays: 0 }), 0, '0 keeps forever');
      assert.equal(await store.prune({ retentionDays: 30, batchSize: 2 }), 3);
      assert.equal(await store.get(owner, 'resp_old1'), undefined);
      assert.ok(await store.get(owner, 'resp_new'));
    });
  });
}
