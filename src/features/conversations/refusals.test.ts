import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { BudgetStore } from '../limits/budget-store.js';
import { FakeGateway } from './testing/fake-gateway.js';
import { connectWs } from './testing/ws-client.js';

// Issue 19 item 6: a rate limit or a budget refuses a conversation message the way /v1 does (429, the
// same codes, Retry-After), before anything is stored: retries leave no user messages and empty replies.
for (const dialect of DIALECTS) {
  describe(`conversation messages refused by limits (${dialect})`, () => {
    let testDb: TestDatabase;
    let h: TestApp;
    let gateway: FakeGateway;
    let base: string;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      gateway = new FakeGateway();
      h = await startTestApp({
        testDb,
        gateway,
        env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PER_MINUTE: '2', RATE_LIMIT_PER_HOUR: '0' },
      });
      base = await h.listen();
    });
    after(async () => {
      await h?.close();
      await testDb?.drop();
    });

    const newConversation = async (user: TestUser) => {
      const res = await h.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(user.accessToken),
        payload: { model: 'fake-model' },
      });
      return res.json().id as string;
    };
    const rowsOf = async (conversationId: string) => ({
      messages: (
        await h.database.db
          .selectFrom('messages')
          .select('id')
          .where('conversation_id', '=', conversationId)
          .execute()
      ).length,
      generations: (
        await h.database.db
          .withTables<{ generations: { id: string; conversation_id: string } }>()
          .selectFrom('generations')
          .select('id')
          .where('conversation_id', '=', conversationId)
          .execute()
      ).length,
    });
    const send = (user: TestUser, conversationId: string, stream: boolean) =>
      h.inject({
        method: 'POST',
        url: `/api/conversations/${conversationId}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: 'hello', stream },
      });

    it('answers 429 rate_limited with Retry-After, JSON or stream, storing nothing', async () => {
      const user = await createUser(h, `rate-${dialect}@example.com`);
      const id = await newConversation(user);
      for (let i = 0; i < 2; i++) assert.equal((await send(user, id, false)).statusCode, 201);
      const stored = await rowsOf(id);
      const calls = gateway.callCount;
      for (const stream of [false, true, false]) {
        const refused = await send(user, id, stream);
        assert.equal(refused.statusCode, 429, refused.body);
        assert.equal(refused.json().error.code, 'rate_limited');
        assert.equal(refused.json().error.type, 'rate_limit_error');
        assert.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After');
      }
      assert.deepEqual(await rowsOf(id), stored, 'no user message, reply or generation was stored');
      assert.equal(gateway.callCount, calls, 'no model call');

      // Over a WebSocket: a rejection frame with the code and retry_after, nothing stored.
      const ws = await connectWs(
        `${base.replace('http', 'ws')}/api/conversations/${id}/ws`,
        bearer(user.accessToken),
      );
      try {
        ws.send({ type: 'send', content: 'over the socket' });
        const rejected = await ws.waitFor((f) => f.type === 'rejected');
        assert.equal(rejected.request_type, 'send');
        assert.equal(rejected.error.code, 'rate_limited');
        assert.ok(rejected.retry_after >= 1);
      } finally {
        await ws.close();
      }
      assert.deepEqual(await rowsOf(id), stored);
    });

    it('answers 429 budget_exceeded (insufficient_quota) when the budget cannot cover the reply, storing nothing', async () => {
      const user = await createUser(h, `budget-${dialect}@example.com`);
      await new BudgetStore(h.database.db).set({
        scope: 'user',
        subjectId: user.id,
        period: 'day',
        limitUsd: null,
        limitTokens: 10,
      });
      const id = await newConversation(user);
      const calls = gateway.callCount;
      for (const stream of [false, true]) {
        const refused = await send(user, id, stream);
        assert.equal(refused.statusCode, 429, refused.body);
        assert.equal(refused.json().error.code, 'budget_exceeded');
        assert.equal(refused.json().error.type, 'insufficient_quota');
      }
      assert.deepEqual(await rowsOf(id), { messages: 0, generations: 0 });
      assert.equal(gateway.callCount, calls);
      const conversation = await h.inject({
        method: 'GET',
        url: `/api/conversations/${id}`,
        headers: bearer(user.accessToken),
      });
      assert.equal(conversation.json().title, null, 'a refused message does not title the conversation');
    });
  });
}
