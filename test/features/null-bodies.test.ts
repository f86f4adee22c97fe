import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * `null` in a JSON body is stored as null on every /api route, never coerced to "" or 0 (issue 19, item 1:
 * Fastify's default `coerceTypes` turned it into the first branch's type before the union was tried).
 */
for (const dialect of DIALECTS) {
  describe(`null in request bodies (${dialect})`, () => {
    let t: TestApp;
    let user: Awaited<ReturnType<typeof createUser>>;
    before(async () => {
      t = await startTestApp({ dialect });
      user = await createUser(t, 'nulls@example.com');
    });
    after(() => t.close());

    it('PATCH /api/me clears display_name with null', async () => {
      const set = await t.inject({
        method: 'PATCH',
        url: '/api/me',
        headers: bearer(user.accessToken),
        payload: { display_name: 'Ada' },
      });
      assert.equal((set.json() as Json).display_name, 'Ada');
      const cleared = await t.inject({
        method: 'PATCH',
        url: '/api/me',
        headers: bearer(user.accessToken),
        payload: { display_name: null },
      });
      assert.equal(cleared.statusCode, 200, cleared.body);
      assert.equal((cleared.json() as Json).display_name, null);
      const me = await t.inject({ method: 'GET', url: '/api/me', headers: bearer(user.accessToken) });
      assert.equal((me.json() as Json).display_name, null);
    });

    it('users created and updated by an admin keep a null display_name', async () => {
      const created = await t.inject({
        method: 'POST',
        url: '/api/users',
        headers: bearer(TEST_MASTER_KEY),
        payload: { email: 'null-name@example.com', password: 'a-long-enough-password', display_name: null },
      });
      assert.equal(created.statusCode, 201, created.body);
      const id = (created.json() as Json).id as string;
      assert.equal((created.json() as Json).display_name, null);
      await t.inject({
        method: 'PATCH',
        url: `/api/users/${id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { display_name: 'Grace' },
      });
      const patched = await t.inject({
        method: 'PATCH',
        url: `/api/users/${id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { display_name: null },
      });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal((patched.json() as Json).display_name, null);
    });

    it('an assistant’s description is null when sent as null, on create and update', async () => {
      const created = await t.inject({
        method: 'POST',
        url: '/api/assistants',
        headers: bearer(user.accessToken),
        payload: { name: 'Helper', model: 'demo', description: null },
      });
      assert.equal(created.statusCode, 201, created.body);
      const assistant = created.json() as Json;
      assert.equal(assistant.description, null);
      await t.inject({
        method: 'PATCH',
        url: `/api/assistants/${assistant.id}`,
        headers: bearer(user.accessToken),
        payload: { description: 'helps' },
      });
      const patched = await t.inject({
        method: 'PATCH',
        url: `/api/assistants/${assistant.id}`,
        headers: bearer(user.accessToken),
        payload: { description: null },
      });
      assert.equal(patched.statusCode, 200, patched.body);
      assert.equal((patched.json() as Json).description, null);
      const read = await t.inject({
        method: 'GET',
        url: `/api/assistants/${assistant.id}`,
        headers: bearer(user.accessToken),
      });
      assert.equal((read.json() as Json).description, null);
    });

    it('query strings are still read as numbers and booleans', async () => {
      // Coercion stays where every value arrives as text.
      const res = await t.inject({
        method: 'GET',
        url: '/api/users?limit=1',
        headers: bearer(TEST_MASTER_KEY),
      });
      assert.equal(res.statusCode, 200, res.body);
    });
  });
}
