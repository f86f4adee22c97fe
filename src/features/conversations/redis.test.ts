import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { eventually } from '../../../test/helpers/chat-stack.js';
import {
  createTestDatabase,
  DIALECTS,
  markSuiteRan,
  type TestDatabase,
} from '../../../test/helpers/databases.js';
import { FakeGateway, Gate } from './testing/fake-gateway.js';
import { SseConnection } from './testing/sse-client.js';

const redisUrl = process.env.TEST_REDIS_URL;

// Two application instances ("replicas") on one database and one Redis: a generation runs on A, and a
// client reconnects to (or cancels it on) B, which serves it from the generation's Redis stream.
for (const dialect of DIALECTS) {
  describe(`generations across replicas through redis (${dialect})`, {
    skip: !redisUrl && 'TEST_REDIS_URL is not set',
  }, () => {
    let testDb: TestDatabase;
    let replicaA: TestApp;
    let replicaB: TestApp;
    let gatewayA: FakeGateway;
    let gatewayB: FakeGateway;
    let baseA: string;
    let baseB: string;
    let user: TestUser;
    let conversationId: string;

    before(async () => {
      markSuiteRan('redis');
      testDb = await createTestDatabase(dialect);
      gatewayA = new FakeGateway();
      gatewayB = new FakeGateway();
      const env = { REDIS_URL: redisUrl! };
      replicaA = await startTestApp({ testDb, env, gateway: gatewayA });
      replicaB = await startTestApp({ testDb, env, gateway: gatewayB, migrate: false });
      baseA = await replicaA.listen();
      baseB = await replicaB.listen();
      user = await createUser(replicaA, `replicas-${dialect}@example.com`);
      const conv = await replicaA.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(user.accessToken),
        payload: { model: 'fake-model' },
      });
      conversationId = conv.json().id;
    });
    after(async () => {
      await replicaA?.close();
      await replicaB?.close();
      await testDb?.drop();
    });

    const startOnA = async (chunks: string[], holdAfter: number, gate: Gate) => {
      gatewayA.script({ chunks, holdAfter, gate });
      const sse = await SseConnection.open(`${baseA}/api/conversations/${conversationId}/messages`, {
        method: 'POST',
        headers: bearer(user.accessToken),
        body: { content: 'across replicas' },
      });
      const start = await sse.waitFor((e) => e.event === 'start');
      return {
        sse,
        generationId: start.data.generation_id as string,
        messageId: start.data.message_id as string,
      };
    };

    it('another replica serves a reconnection: missed events from the Redis stream, then the live rest', async () => {
      const gate = new Gate();
      const { sse, generationId } = await startOnA(['red ', 'green ', 'blue ', 'white'], 2, gate);
      await sse.waitFor((e) => e.id === 3);
      sse.close();

      const onB = await SseConnection.open(`${baseB}/api/generations/${generationId}/events`, {
        headers: { ...bearer(user.accessToken), 'last-event-id': '3' },
      });
      assert.equal(onB.status, 200);
      await onB.waitFor((e) => e.id === 4);
      gate.open();
      await onB.ended;
      assert.deepEqual(
        onB.events.map((e) => [e.id, e.event]),
        [
          [4, 'delta'],
          [5, 'delta'],
          [6, 'delta'],
          [7, 'done'],
        ],
      );
      assert.equal(onB.events.at(-1)!.data.message.content, 'red green blue white');
      assert.equal(gatewayB.callCount, 0, 'B only relayed');

      // From the start, after the end: the whole log comes from Redis.
      const replay = await SseConnection.open(`${baseB}/api/generations/${generationId}/events`, {
        headers: bearer(user.accessToken),
      });
      await replay.ended;
      assert.deepEqual(
        replay.events.map((e) => e.event),
        ['message', 'start', 'delta', 'delta', 'delta', 'delta', 'done'],
      );
      const key = `colloquy:gen:${generationId}:events`;
      assert.equal(await replicaB.redis!.xlen(key), 7);
      assert.ok((await replicaB.redis!.ttl(key)) > 0, 'the stream expires');

      // Another user gets 404 on either replica.
      const stranger = await createUser(replicaB, `stranger-${dialect}@example.com`);
      const denied = await replicaB.inject({
        method: 'GET',
        url: `/api/generations/${generationId}/events`,
        headers: bearer(stranger.accessToken),
      });
      assert.equal(denied.statusCode, 404);
    });

    it('a cancel sent to another replica stops the generation where it runs', async () => {
      const gate = new Gate();
      const { sse, generationId, messageId } = await startOnA(['first', ' second', ' third'], 1, gate);
      await gate.reached;
      await sse.waitFor((e) => e.event === 'delta');
      const cancelled = await replicaB.inject({
        method: 'POST',
        url: `/api/generations/${generationId}/cancel`,
        headers: bearer(user.accessToken),
      });
      // 200 with the outcome when the replica running it saved it within the route's short wait; on a loaded
      // machine it may not have yet: 202 `cancelling`, and the saved message (below) says how it ended.
      assert.ok([200, 202].includes(cancelled.statusCode), cancelled.body);
      if (cancelled.statusCode === 200) {
        assert.equal(cancelled.json().status, 'partial');
        assert.equal(cancelled.json().message.content, 'first');
      } else assert.equal(cancelled.json().status, 'cancelling');
      const last = await sse.waitFor((e) => e.event === 'error');
      assert.equal(last.data.error.code, 'cancelled');
      const saved = () =>
        replicaB.database.db
          .selectFrom('messages')
          .selectAll()
          .where('id', '=', messageId)
          .executeTakeFirstOrThrow();
      await eventually(async () => (await saved()).status !== 'streaming', 10_000, 'the message saved');
      const row = await saved();
      assert.equal(row.status, 'partial');
      assert.equal(row.content, 'first');
      gate.open();
    });
  });
}
