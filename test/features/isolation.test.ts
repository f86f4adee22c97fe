import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  type TestApp,
} from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';

interface PublicKey {
  id: string;
  user_id: string;
  name: string;
  revoked_at: string | null;
}

type User = Awaited<ReturnType<typeof createUser>>;

for (const dialect of DIALECTS) {
  describe(`isolation between users (${dialect})`, () => {
    let t: TestApp;
    let admin: User;
    let a: User;
    let b: User;
    let aKey: { id: string; key: string };
    let bKey: { id: string; key: string };

    const get = (token: string, url: string) => t.inject({ method: 'GET', url, headers: bearer(token) });
    const createKey = async (token: string, name: string) => {
      const res = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(token),
        payload: { name },
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as { id: string; key: string };
    };
    const keysIn = (res: LightMyRequestResponse) => {
      assert.equal(res.statusCode, 200, res.body);
      return res.json().data as PublicKey[];
    };

    /** B's key is untouched: it still authenticates as B and is not revoked. */
    async function assertBKeyIntact() {
      const me = await get(bKey.key, '/api/me');
      assert.equal(me.statusCode, 200, me.body);
      assert.equal(me.json().id, b.id);
      const own = await get(b.accessToken, `/api/keys/${bKey.id}`);
      assert.equal(own.statusCode, 200);
      assert.equal(own.json().revoked_at, null);
    }

    before(async () => {
      t = await startTestApp({ dialect });
      admin = await createUser(t, 'iso-admin@example.com', 'admin');
      a = await createUser(t, 'user-a@example.com');
      b = await createUser(t, 'user-b@example.com');
      aKey = await createKey(a.accessToken, 'a key');
      bKey = await createKey(b.accessToken, 'b key');
      await createKey(b.accessToken, 'b second key');
    });
    after(() => t.close());

    // User A tries everything twice: signed in (access token) and with A's own API key.
    for (const via of ['access token', 'API key'] as const) {
      describe(`user A via ${via}`, () => {
        const token = () => (via === 'access token' ? a.accessToken : aKey.key);

        it('cannot read B’s key: 404, exactly like a key that does not exist', async () => {
          const res = await get(token(), `/api/keys/${bKey.id}`);
          assertError(res, 404, 'not_found');
          const missing = await get(token(), '/api/keys/key_does_not_exist');
          assert.equal(res.body, missing.body);
          assert.ok(!res.body.includes(b.id));
        });

        it('cannot revoke B’s key: 404, and the key keeps working', async () => {
          const res = await t.inject({
            method: 'DELETE',
            url: `/api/keys/${bKey.id}`,
            headers: bearer(token()),
          });
          assertError(res, 404, 'not_found');
          await assertBKeyIntact();
        });

        it('cannot read B’s account: 404, exactly like an account that does not exist', async () => {
          const res = await get(token(), `/api/users/${b.id}`);
          assertError(res, 404, 'not_found');
          const missing = await get(token(), '/api/users/usr_does_not_exist');
          assert.equal(res.body, missing.body);
          assert.ok(!res.body.includes(b.email));
          // A's own account is readable.
          const own = await get(token(), `/api/users/${a.id}`);
          assert.equal(own.statusCode, 200);
          assert.equal(own.json().id, a.id);
        });

        it('cannot list users (403) nor change B’s account (403)', async () => {
          assertError(await get(token(), '/api/users'), 403, 'forbidden');
          const patch = await t.inject({
            method: 'PATCH',
            url: `/api/users/${b.id}`,
            headers: bearer(token()),
            payload: { disabled: true },
          });
          assertError(patch, 403, 'forbidden');
          assert.equal((await get(b.accessToken, '/api/me')).statusCode, 200);
        });

        it('cannot list B’s keys with ?user_id= (403)', async () => {
          const res = await get(token(), `/api/keys?user_id=${b.id}`);
          assertError(res, 403, 'forbidden');
          assert.ok(!res.body.includes(bKey.id));
        });

        it('gets only their own keys from ?all=true and from the plain list', async () => {
          for (const url of [
            '/api/keys?all=true',
            '/api/keys',
            `/api/keys?user_id=${a.id}`,
            '/api/keys?all=true&limit=100',
          ]) {
            const keys = keysIn(await get(token(), url));
            assert.ok(keys.length > 0, url);
            assert.ok(
              keys.every((k) => k.user_id === a.id),
              `${url}: ${keys.map((k) => k.user_id).join(',')}`,
            );
            assert.ok(
              keys.some((k) => k.id === aKey.id),
              url,
            );
            assert.ok(!keys.some((k) => k.id === bKey.id), url);
          }
        });

        it('cannot create a key for B (403)', async () => {
          const res = await t.inject({
            method: 'POST',
            url: '/api/keys',
            headers: bearer(token()),
            payload: { name: 'for b', user_id: b.id },
          });
          assertError(res, 403, 'forbidden');
          const bKeys = keysIn(await get(b.accessToken, '/api/keys?limit=100'));
          assert.ok(!bKeys.some((k) => k.name === 'for b'));
        });
      });
    }

    it('leaves B’s key working after all of A’s attempts', async () => {
      await assertBKeyIntact();
      const listed = keysIn(await get(bKey.key, '/api/keys'));
      assert.ok(listed.some((k) => k.id === bKey.id));
      assert.ok(listed.every((k) => k.user_id === b.id));
    });

    for (const who of ['admin user', 'master key'] as const) {
      it(`lets the ${who} see both users and both users’ keys`, async () => {
        const token = who === 'admin user' ? admin.accessToken : TEST_MASTER_KEY;
        const all = keysIn(await get(token, '/api/keys?all=true&limit=100'));
        assert.ok(all.some((k) => k.id === aKey.id));
        assert.ok(all.some((k) => k.id === bKey.id));

        const onlyB = keysIn(await get(token, `/api/keys?user_id=${b.id}&limit=100`));
        assert.equal(onlyB.length, 2);
        assert.ok(onlyB.every((k) => k.user_id === b.id));

        const users = await get(token, '/api/users?limit=100');
        assert.equal(users.statusCode, 200, users.body);
        const ids = (users.json().data as { id: string }[]).map((u) => u.id);
        assert.ok(ids.includes(a.id) && ids.includes(b.id));

        const userB = await get(token, `/api/users/${b.id}`);
        assert.equal(userB.statusCode, 200);
        assert.equal(userB.json().email, b.email);
        const keyB = await get(token, `/api/keys/${bKey.id}`);
        assert.equal(keyB.statusCode, 200);
        assert.equal(keyB.json().user_id, b.id);
        assert.equal(keyB.json().key, undefined);
      });
    }

    it('lets an admin revoke another user’s key', async () => {
      const spare = await createKey(b.accessToken, 'spare');
      const res = await t.inject({
        method: 'DELETE',
        url: `/api/keys/${spare.id}`,
        headers: bearer(admin.accessToken),
      });
      assert.equal(res.statusCode, 200, res.body);
      assertError(await get(spare.key, '/api/me'), 401, 'invalid_api_key');
      await assertBKeyIntact();
    });
  });
}
