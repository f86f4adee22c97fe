import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { type ChatStack, startChatStack } from '../../../test/helpers/chat-stack.js';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { FakeGateway } from './testing/fake-gateway.js';
import { parseSse } from './testing/sse-client.js';

// Issue 19 item 13: a reply that calls tools keeps its calls (stored on the assistant message, returned by
// the API and in the SSE `done` event), and a stream that finished without `[DONE]` is complete.
const WEATHER = { id: 'call_1', name: 'get_weather', arguments: '{"location":"Paris"}' };
const asOpenAi = (call: typeof WEATHER) => ({
  id: call.id,
  type: 'function',
  function: { name: call.name, arguments: call.arguments },
});

for (const dialect of DIALECTS) {
  describe(`conversation replies with tool calls (${dialect})`, () => {
    let testDb: TestDatabase;
    let h: TestApp;
    let gateway: FakeGateway;
    let user: TestUser;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      gateway = new FakeGateway();
      h = await startTestApp({ testDb, gateway });
      user = await createUser(h, `tools-${dialect}@example.com`);
    });
    after(async () => {
      await h?.close();
      await testDb?.drop();
    });

    const newConversation = async () => {
      const res = await h.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(user.accessToken),
        payload: { model: 'fake-model' },
      });
      return res.json().id as string;
    };

    it('stores the calls on the assistant message and returns them (JSON answer and message list)', async () => {
      const id = await newConversation();
      const second = { id: 'call_2', name: 'get_time', arguments: '{"zone":"CET"}' };
      gateway.script({ chunks: [], toolCalls: [WEATHER, second] });
      const res = await h.inject({
        method: 'POST',
        url: `/api/conversations/${id}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: 'weather in Paris?', stream: false },
      });
      assert.equal(res.statusCode, 201, res.body);
      const { message } = res.json();
      assert.equal(message.status, 'complete');
      assert.equal(message.content, '');
      assert.deepEqual(message.tool_calls, [asOpenAi(WEATHER), asOpenAi(second)]);
      assert.equal(res.json().user_message.tool_calls, null);

      const list = await h.inject({
        method: 'GET',
        url: `/api/conversations/${id}/messages`,
        headers: bearer(user.accessToken),
      });
      const stored = list.json().data.find((m: { id: string }) => m.id === message.id);
      assert.deepEqual(stored.tool_calls, [asOpenAi(WEATHER), asOpenAi(second)]);
    });

    it('sends them in the SSE done event, next to the text', async () => {
      const id = await newConversation();
      gateway.script({ chunks: ['Let me check.'], toolCalls: [WEATHER] });
      const res = await h.inject({
        method: 'POST',
        url: `/api/conversations/${id}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: 'weather?' },
      });
      const done = parseSse(res.body).find((e) => e.event === 'done');
      assert.ok(done, res.body);
      assert.equal(done.data.message.content, 'Let me check.');
      assert.deepEqual(done.data.message.tool_calls, [asOpenAi(WEATHER)]);
      // A reconnection after the end rebuilds the final event from the database: the calls are in it.
      const replay = await h.inject({
        method: 'GET',
        url: `/api/generations/${res.headers['x-generation-id']}/events`,
        headers: bearer(user.accessToken),
      });
      const replayed = parseSse(replay.body).find((e) => e.event === 'done');
      assert.deepEqual(replayed?.data.message.tool_calls, [asOpenAi(WEATHER)]);
    });
  });
}

describe('a conversation reply whose upstream stream ends without [DONE]', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ fakeOptions: { reply: 'Hello there friend' } });
  });
  after(() => stack.close());

  const reply = async () => {
    const conv = await fetch(`${stack.url}/api/conversations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(stack.apiKey) },
      body: JSON.stringify({ model: 'gpt-4o-mini' }),
    });
    const { id } = (await conv.json()) as { id: string };
    const res = await fetch(`${stack.url}/api/conversations/${id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(stack.apiKey) },
      body: JSON.stringify({ content: 'hi', stream: false }),
    });
    assert.equal(res.status, 201);
    return (await res.json()) as { status: string; message: { content: string; status: string } };
  };

  it('is complete when it finished (finish_reason and usage) and the upstream closed cleanly', async () => {
    stack.fake.queue({ kind: 'no-done' });
    const body = await reply();
    assert.equal(body.status, 'complete');
    assert.equal(body.message.content, 'Hello there friend');
  });

  it('is still partial when it was cut before any finish_reason', async () => {
    stack.fake.queue({ kind: 'no-done-unfinished' });
    const body = await reply();
    assert.equal(body.status, 'partial');
    assert.equal(body.message.content, 'Hello there friend');
  });
});
