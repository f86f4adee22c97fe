import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  type TestApp,
  type TestUser,
} from '../../../test/helpers/app.js';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { FakeGateway } from './testing/fake-gateway.js';

for (const dialect of DIALECTS) {
  describe(`conversations (${dialect})`, () => {
    let testDb: TestDatabase;
    let h: TestApp;
    let gateway: FakeGateway;
    let a: TestUser;
    let b: TestUser;

    const call = (user: TestUser, method: string, url: string, payload?: unknown) =>
      h.inject({
        method: method as 'GET',
        url,
        headers: bearer(user.accessToken),
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
    const create = async (user: TestUser, payload: Record<string, unknown> = {}) => {
      const res = await call(user, 'POST', '/api/conversations', { model: 'fake-model', ...payload });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as {
        id: string;
        title: string | null;
        updated_at: string;
        active_leaf_id: string | null;
      };
    };
    const say = async (user: TestUser, id: string, content: string, extra: Record<string, unknown> = {}) => {
      const res = await call(user, 'POST', `/api/conversations/${id}/messages`, {
        content,
        stream: false,
        ...extra,
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json();
    };
    const listAll = async (user: TestUser, query: string) => {
      const res = await call(user, 'GET', `/api/conversations?${query}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as { data: { id: string; title: string | null }[]; next_cursor: string | null };
    };

    before(async () => {
      testDb = await createTestDatabase(dialect);
      gateway = new FakeGateway();
      h = await startTestApp({ testDb, gateway });
      a = await createUser(h, 'conv-a@example.com');
      b = await createUser(h, 'conv-b@example.com');
    });
    after(async () => {
      await h?.close();
      await testDb?.drop();
    });

    it('creates a conversation and reads it back', async () => {
      const created = await create(a, { title: 'Trip plans' });
      assert.equal(created.title, 'Trip plans');
      assert.equal(created.active_leaf_id, null);
      const got = await call(a, 'GET', `/api/conversations/${created.id}`);
      assert.equal(got.statusCode, 200);
      assert.deepEqual(got.json(), created);
    });

    it('refuses an unknown model, an invisible assistant, and the master key (no user account)', async () => {
      assertError(await call(a, 'POST', '/api/conversations', { model: 'nope' }), 404, 'model_not_found');
      assertError(
        await call(a, 'POST', '/api/conversations', { assistant_id: 'ast_missing' }),
        404,
        'not_found',
      );
      const master = await h.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(TEST_MASTER_KEY),
        payload: {},
      });
      assertError(master, 400, 'invalid_request');
      assertError(await h.inject({ method: 'GET', url: '/api/conversations' }), 401, 'unauthorized');
    });

    it('lists newest first with cursor pagination over (updated_at, id), without gaps or repeats', async () => {
      const user = await createUser(h, 'pager@example.com');
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) ids.push((await create(user, { title: `chat ${i}` })).id);
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await listAll(user, `limit=3${cursor ? `&after=${cursor}` : ''}`);
        assert.ok(page.data.length <= 3);
        seen.push(...page.data.map((c) => c.id));
        cursor = page.next_cursor;
        pages++;
      } while (cursor && pages < 10); // a cursor that never ends fails below, not by looping
      assert.equal(pages, 3);
      assert.equal(new Set(seen).size, seen.length, 'no repeats');
      assert.deepEqual([...seen].sort(), [...ids].sort(), 'no gaps');
      assert.deepEqual(
        seen,
        (await listAll(user, 'limit=100')).data.map((c) => c.id),
        'the same order as one page',
      );
      assert.equal(seen.at(-1), ids[0], 'the oldest last');

      // Activity moves a conversation to the top.
      await say(user, ids[0]!, 'bump');
      const first = await listAll(user, 'limit=1');
      assert.equal(first.data[0]!.id, ids[0]);
      assertError(await call(user, 'GET', '/api/conversations?after=garbage!'), 400, 'invalid_request');
    });

    it('searches titles and message text, case-insensitively, with % and _ taken literally', async () => {
      const user = await createUser(h, 'search@example.com');
      const byTitle = await create(user, { title: 'Quarterly BUDGET review' });
      const byMessage = await create(user);
      await say(user, byMessage.id, 'what about the budget for 100% of Q3?');
      const other = await create(user, { title: 'Holiday' });
      await say(user, other.id, 'beaches and mountains');

      const budget = await listAll(user, 'q=budget');
      assert.deepEqual(new Set(budget.data.map((c) => c.id)), new Set([byTitle.id, byMessage.id]));
      assert.deepEqual(
        (await listAll(user, 'q=MOUNTAIN')).data.map((c) => c.id),
        [other.id],
      );
      assert.deepEqual(
        (await listAll(user, 'q=100%25')).data.map((c) => c.id),
        [byMessage.id],
      );
      assert.deepEqual(
        (await listAll(user, 'q=%25')).data.map((c) => c.id),
        [byMessage.id],
      );
      assert.deepEqual((await listAll(user, 'q=_')).data, []);
      assert.deepEqual((await listAll(user, 'q=zebra')).data, []);
      // Another user's conversations never match.
      assert.deepEqual((await listAll(a, 'q=mountains')).data, []);
    });

    it('renames, changes the model, and deletes', async () => {
      const conv = await create(a);
      const renamed = await call(a, 'PATCH', `/api/conversations/${conv.id}`, {
        title: 'Renamed',
        model: 'other-model',
      });
      assert.equal(renamed.statusCode, 200, renamed.body);
      assert.equal(renamed.json().title, 'Renamed');
      assert.equal(renamed.json().model, 'other-model');
      assertError(
        await call(a, 'PATCH', `/api/conversations/${conv.id}`, { model: 'nope' }),
        404,
        'model_not_found',
      );
      await say(a, conv.id, 'hello');

      const deleted = await call(a, 'DELETE', `/api/conversations/${conv.id}`);
      assert.equal(deleted.statusCode, 204);
      assertError(await call(a, 'GET', `/api/conversations/${conv.id}`), 404, 'not_found');
      assertError(await call(a, 'GET', `/api/conversations/${conv.id}/messages`), 404, 'not_found');
      const left = await h.database.db
        .selectFrom('messages')
        .select('id')
        .where('conversation_id', '=', conv.id)
        .execute();
      assert.deepEqual(left, []);
    });

    it('titles a conversation after its first exchange from the first user message, unless the user set one', async () => {
      const conv = await create(a);
      const long =
        'Could you please help me plan a two week trip through northern Italy with kids, including trains and food?';
      await say(a, conv.id, long);
      const title = (await call(a, 'GET', `/api/conversations/${conv.id}`)).json().title as string;
      assert.ok(title.length <= 61, title);
      assert.ok(title.endsWith('…'), title);
      assert.ok(long.startsWith(title.slice(0, -1)), 'a prefix of the message');
      assert.ok(long[title.length - 1] === ' ', 'cut at a word boundary');
      await say(a, conv.id, 'A second message does not retitle');
      assert.equal((await call(a, 'GET', `/api/conversations/${conv.id}`)).json().title, title);

      const named = await create(a, { title: 'Mine' });
      await say(a, named.id, 'something else entirely');
      assert.equal((await call(a, 'GET', `/api/conversations/${named.id}`)).json().title, 'Mine');
    });

    it('pages through the active branch root to leaf', async () => {
      const conv = await create(a);
      for (const text of ['one', 'two', 'three']) await say(a, conv.id, text);
      const first = await call(a, 'GET', `/api/conversations/${conv.id}/messages?limit=4`);
      assert.equal(first.statusCode, 200, first.body);
      const page1 = first.json();
      assert.deepEqual(
        page1.data.map((m: { role: string; content: string }) => `${m.role}:${m.content}`),
        ['user:one', 'assistant:Hello there!', 'user:two', 'assistant:Hello there!'],
      );
      assert.ok(page1.next_cursor);
      const page2 = (
        await call(a, 'GET', `/api/conversations/${conv.id}/messages?limit=4&after=${page1.next_cursor}`)
      ).json();
      assert.deepEqual(
        page2.data.map((m: { content: string }) => m.content),
        ['three', 'Hello there!'],
      );
      assert.equal(page2.next_cursor, null);
      assert.equal(page2.leaf_id, page1.leaf_id);
      for (const m of [...page1.data, ...page2.data]) assert.deepEqual(m.sibling_ids, [m.id]);
      assertError(
        await call(a, 'GET', `/api/conversations/${conv.id}/messages?after=msg_nope`),
        400,
        'invalid_request',
      );
    });

    it('hides one user’s conversations from another: 404 everywhere', async () => {
      const conv = await create(a, { title: 'private' });
      const reply = await say(a, conv.id, 'secret');
      const msgId = reply.message.id as string;
      const genId = reply.generation_id as string;
      const attempts: [string, string, unknown?][] = [
        ['GET', `/api/conversations/${conv.id}`],
        ['PATCH', `/api/conversations/${conv.id}`, { title: 'hijacked' }],
        ['DELETE', `/api/conversations/${conv.id}`],
        ['GET', `/api/conversations/${conv.id}/messages`],
        ['GET', `/api/conversations/${conv.id}/messages?leaf=${msgId}`],
        ['POST', `/api/conversations/${conv.id}/messages`, { content: 'hi', stream: false }],
        ['POST', `/api/conversations/${conv.id}/messages/${msgId}/regenerate`, { stream: false }],
        [
          'POST',
          `/api/conversations/${conv.id}/messages/${reply.user_message.id}/edit`,
          { content: 'x', stream: false },
        ],
        ['POST', `/api/conversations/${conv.id}/messages/${msgId}/continue`, { stream: false }],
        ['GET', `/api/generations/${genId}`],
        ['GET', `/api/generations/${genId}/events`],
        ['POST', `/api/generations/${genId}/cancel`],
      ];
      const calls = gateway.callCount;
      for (const [method, url, payload] of attempts) {
        assertError(await call(b, method, url, payload), 404, 'not_found');
      }
      assert.equal(gateway.callCount, calls, 'no model call on behalf of another user');
      assert.ok(!(await listAll(b, 'limit=100')).data.some((c) => c.id === conv.id));
      const still = await call(a, 'GET', `/api/conversations/${conv.id}`);
      assert.equal(still.json().title, 'private');
    });
  });
}
