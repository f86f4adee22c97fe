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
import { FakeGateway } from '../conversations/testing/fake-gateway.js';

for (const dialect of DIALECTS) {
  describe(`assistants (${dialect})`, () => {
    let testDb: TestDatabase;
    let h: TestApp;
    let gateway: FakeGateway;
    let admin: TestUser;
    let a: TestUser;
    let b: TestUser;

    const call = (user: TestUser | string, method: string, url: string, payload?: unknown) =>
      h.inject({
        method: method as 'GET',
        url,
        headers: bearer(typeof user === 'string' ? user : user.accessToken),
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
    const createAssistant = async (user: TestUser | string, payload: Record<string, unknown> = {}) => {
      const res = await call(user, 'POST', '/api/assistants', {
        name: 'Helper',
        system_prompt: 'Be helpful.',
        model: 'fake-model',
        ...payload,
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json();
    };
    const listIds = async (user: TestUser) => {
      const res = await call(user, 'GET', '/api/assistants?limit=100');
      assert.equal(res.statusCode, 200, res.body);
      return new Set((res.json().data as { id: string }[]).map((x) => x.id));
    };

    before(async () => {
      testDb = await createTestDatabase(dialect);
      gateway = new FakeGateway();
      h = await startTestApp({ testDb, gateway });
      admin = await createUser(h, 'ast-admin@example.com', 'admin');
      a = await createUser(h, 'ast-a@example.com');
      b = await createUser(h, 'ast-b@example.com');
    });
    after(async () => {
      await h?.close();
      await testDb?.drop();
    });

    it('users create private assistants; only admins create shared ones', async () => {
      const mine = await createAssistant(a, {
        name: 'Poet',
        description: 'Writes verse',
        params: { temperature: 1.2, top_p: 0.9, max_tokens: 300, stop: ['\n\n'] },
      });
      assert.equal(mine.owner_id, a.id);
      assert.equal(mine.shared, false);
      assert.deepEqual(mine.params, { temperature: 1.2, top_p: 0.9, max_tokens: 300, stop: ['\n\n'] });
      assertError(
        await call(a, 'POST', '/api/assistants', { name: 'x', model: 'fake-model', shared: true }),
        403,
        'forbidden',
      );
      const shared = await createAssistant(admin, { name: 'Company bot', shared: true });
      assert.equal(shared.owner_id, null);
      assert.equal(shared.shared, true);
      const byMaster = await createAssistant(TEST_MASTER_KEY, { name: 'Master bot', shared: true });
      assert.equal(byMaster.owner_id, null);
      assertError(
        await call(TEST_MASTER_KEY, 'POST', '/api/assistants', { name: 'x', model: 'fake-model' }),
        400,
        'invalid_request',
      );
    });

    it('validates the model and the params', async () => {
      assertError(
        await call(a, 'POST', '/api/assistants', { name: 'x', model: 'nope' }),
        404,
        'model_not_found',
      );
      const res = await call(a, 'POST', '/api/assistants', {
        name: 'x',
        model: 'fake-model',
        params: { temperature: 3 },
      });
      assertError(res, 400, 'validation_error');
      // Unknown params are refused, naming the field: never forwarded upstream, never dropped silently.
      const unknown = await call(a, 'POST', '/api/assistants', {
        name: 'x',
        model: 'fake-model',
        params: { wild: 1 },
      });
      assertError(unknown, 400, 'validation_error');
      assert.equal(unknown.json().error.param, 'params.wild');
      assert.match(unknown.json().error.message, /unknown field 'params\.wild'/);
    });

    it('a user sees shared assistants and their own; someone else’s private one is 404', async () => {
      const shared = await createAssistant(admin, { name: 'Everyone', shared: true });
      const aOwn = await createAssistant(a, { name: 'A only' });
      const bOwn = await createAssistant(b, { name: 'B only' });
      const aSees = await listIds(a);
      assert.ok(aSees.has(shared.id));
      assert.ok(aSees.has(aOwn.id));
      assert.ok(!aSees.has(bOwn.id));
      assert.equal((await call(a, 'GET', `/api/assistants/${shared.id}`)).statusCode, 200);
      for (const [method, payload] of [
        ['GET', undefined],
        ['PATCH', { name: 'mine now' }],
        ['DELETE', undefined],
      ] as const) {
        assertError(await call(a, method, `/api/assistants/${bOwn.id}`, payload), 404, 'not_found');
      }
      assertError(await call(a, 'GET', '/api/assistants?all=true'), 403, 'forbidden');
      const all = await call(admin, 'GET', '/api/assistants?all=true&limit=100');
      assert.ok((all.json().data as { id: string }[]).some((x) => x.id === bOwn.id));
      assert.equal((await call(b, 'GET', `/api/assistants/${bOwn.id}`)).json().name, 'B only');
    });

    it('shared assistants are changed and deleted by admins only; private ones by their owner', async () => {
      const shared = await createAssistant(admin, { name: 'Shared', shared: true });
      assertError(await call(a, 'PATCH', `/api/assistants/${shared.id}`, { name: 'x' }), 403, 'forbidden');
      assertError(await call(a, 'DELETE', `/api/assistants/${shared.id}`), 403, 'forbidden');
      const renamed = await call(admin, 'PATCH', `/api/assistants/${shared.id}`, {
        name: 'Shared v2',
        system_prompt: 'New prompt',
        params: { temperature: 0 },
      });
      assert.equal(renamed.statusCode, 200, renamed.body);
      assert.equal(renamed.json().name, 'Shared v2');
      assert.deepEqual(renamed.json().params, { temperature: 0 });

      const own = await createAssistant(a, { name: 'Mine' });
      const patched = await call(a, 'PATCH', `/api/assistants/${own.id}`, {
        model: 'other-model',
        description: null,
      });
      assert.equal(patched.json().model, 'other-model');
      assertError(
        await call(a, 'PATCH', `/api/assistants/${own.id}`, { model: 'nope' }),
        404,
        'model_not_found',
      );
      assert.equal((await call(a, 'DELETE', `/api/assistants/${own.id}`)).statusCode, 204);
      assertError(await call(a, 'GET', `/api/assistants/${own.id}`), 404, 'not_found');
      assert.equal((await call(admin, 'DELETE', `/api/assistants/${shared.id}`)).statusCode, 204);
    });

    it('pages the list newest first', async () => {
      const user = await createUser(h, 'ast-pager@example.com');
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await createAssistant(user, { name: `p${i}` })).id);
      const first = (await call(user, 'GET', '/api/assistants?limit=3')).json();
      const second = (await call(user, 'GET', `/api/assistants?limit=3&after=${first.next_cursor}`)).json();
      const mine = [...first.data, ...second.data]
        .map((x: { id: string }) => x.id)
        .filter((id) => ids.includes(id));
      assert.deepEqual(new Set(mine), new Set(ids));
      assert.equal(mine.length, 5);
    });

    it('conversations use shared or own assistants (their prompt, model and params), never another user’s', async () => {
      const shared = await createAssistant(admin, {
        name: 'Pirate',
        system_prompt: 'Talk like a pirate.',
        model: 'other-model',
        params: { temperature: 0.7 },
        shared: true,
      });
      const bOwn = await createAssistant(b, { name: 'B secret' });
      assertError(await call(a, 'POST', '/api/conversations', { assistant_id: bOwn.id }), 404, 'not_found');
      const conv = await call(a, 'POST', '/api/conversations', { assistant_id: shared.id });
      assert.equal(conv.statusCode, 201, conv.body);
      const id = conv.json().id;
      assertError(
        await call(a, 'PATCH', `/api/conversations/${id}`, { assistant_id: bOwn.id }),
        404,
        'not_found',
      );

      const sent = await call(a, 'POST', `/api/conversations/${id}/messages`, {
        content: 'ahoy',
        stream: false,
      });
      assert.equal(sent.statusCode, 201, sent.body);
      const body = gateway.calls.at(-1)!.body;
      assert.equal(body.model, 'other-model', 'the assistant’s model');
      assert.equal(body.temperature, 0.7);
      assert.deepEqual(body.messages[0], { role: 'system', content: 'Talk like a pirate.' });

      // Deleting the assistant detaches it; the conversation and its messages stay.
      assert.equal((await call(admin, 'DELETE', `/api/assistants/${shared.id}`)).statusCode, 204);
      const after = await call(a, 'GET', `/api/conversations/${id}`);
      assert.equal(after.json().assistant_id, null);
      assert.equal((await call(a, 'GET', `/api/conversations/${id}/messages`)).json().data.length, 2);
    });
  });
}
