import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../../src/core/errors.js';
import type { ApiKeyStore, KeyOwner } from '../../src/features/api-keys/store.js';
import { AccessTokens } from '../../src/features/auth/access-tokens.js';
import { LoginThrottle } from '../../src/features/auth/login-throttle.js';
import type { RefreshTokenStore } from '../../src/features/auth/refresh-tokens.js';
import { AuthService } from '../../src/features/auth/service.js';
import type { UserStore } from '../../src/features/users/store.js';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  TEST_SECRET,
  type TestApp,
} from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';

const KEY_FORMAT = /^ck-[A-Za-z0-9_-]{43}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

interface PublicKey {
  id: string;
  user_id: string;
  name: string;
  prefix: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  created_at: string;
}
type CreatedKey = PublicKey & { key: string };

const rejectsWith = (code: string) => (err: unknown) => {
  assert.ok(err instanceof AppError, `expected an AppError, got ${String(err)}`);
  assert.equal(err.code, code);
  assert.equal(err.status, 401);
  return true;
};

/** A stand-in store that records every method called on it; `impl` provides the answers. */
function countingStore<T>(impl: Record<string, (...args: unknown[]) => unknown> = {}) {
  const calls: string[] = [];
  const store = new Proxy(
    {},
    {
      get: (_target, name) => {
        if (typeof name !== 'string' || name === 'then') return undefined;
        return (...args: unknown[]) => {
          calls.push(name);
          const fn = impl[name];
          if (!fn) throw new Error(`unexpected store call: ${name}`);
          return fn(...args);
        };
      },
    },
  ) as T;
  return { store, calls };
}

describe('AuthService: API keys without a database', () => {
  const owner: KeyOwner = { keyId: 'key_1', userId: 'usr_1', role: 'user', lastUsedAt: null };
  const goodKey = `ck-${randomBytes(32).toString('base64url')}`;

  function service() {
    const apiKeys = countingStore<ApiKeyStore>({
      // Nothing cached: every lookup goes to findUsable.
      peekUsable: () => undefined,
      findUsable: async (hash) => (hash === sha256(goodKey) ? owner : undefined),
      touch: async () => {},
    });
    const users = countingStore<UserStore>();
    const refreshTokens = countingStore<RefreshTokenStore>();
    const auth = new AuthService({
      users: users.store,
      apiKeys: apiKeys.store,
      refreshTokens: refreshTokens.store,
      accessTokens: new AccessTokens(TEST_SECRET, 900),
      throttle: new LoginThrottle({ maxFailures: 5, windowSeconds: 60 }),
      masterKey: undefined,
    });
    const allCalls = () => [...apiKeys.calls, ...users.calls, ...refreshTokens.calls];
    return { auth, apiKeys, allCalls };
  }

  it('refuses malformed keys with invalid_api_key without touching any store', async () => {
    const { auth, allCalls } = service();
    const malformed = [
      'ck-short',
      'ck-',
      `ck-${'a'.repeat(42)}`,
      `ck-${'a'.repeat(44)}`,
      `ck-${'a'.repeat(42)}!`,
      `ck-${'a'.repeat(42)}=`,
      `${goodKey}x`,
    ];
    for (const key of malformed) {
      await assert.rejects(auth.authenticate(`Bearer ${key}`), rejectsWith('invalid_api_key'), key);
    }
    assert.deepEqual(allCalls(), []);
  });

  it('looks a well-formed key up once (control: the fake stores do count calls)', async () => {
    const { auth, apiKeys } = service();
    const unknown = `ck-${randomBytes(32).toString('base64url')}`;
    await assert.rejects(auth.authenticate(`Bearer ${unknown}`), rejectsWith('invalid_api_key'));
    assert.deepEqual(apiKeys.calls, ['peekUsable', 'findUsable']);

    const principal = await auth.authenticate(`Bearer ${goodKey}`);
    assert.deepEqual(principal, {
      userId: 'usr_1',
      role: 'user',
      via: 'api_key',
      apiKeyId: 'key_1',
      cacheResponses: undefined,
    });
    assert.deepEqual(apiKeys.calls, ['peekUsable', 'findUsable', 'peekUsable', 'findUsable', 'touch']);
  });
});

for (const dialect of DIALECTS) {
  describe(`API keys (${dialect})`, () => {
    let t: TestApp;
    let user: Awaited<ReturnType<typeof createUser>>;
    let admin: Awaited<ReturnType<typeof createUser>>;
    let other: Awaited<ReturnType<typeof createUser>>;

    const createKey = async (token: string, payload: Record<string, unknown> = { name: 'test key' }) => {
      const res = await t.inject({ method: 'POST', url: '/api/keys', headers: bearer(token), payload });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as CreatedKey;
    };
    const getMe = (token: string) => t.inject({ method: 'GET', url: '/api/me', headers: bearer(token) });
    const getKey = (token: string, id: string) =>
      t.inject({ method: 'GET', url: `/api/keys/${id}`, headers: bearer(token) });
    const listKeys = async (token: string, query = '') => {
      const res = await t.inject({ method: 'GET', url: `/api/keys${query}`, headers: bearer(token) });
      assert.equal(res.statusCode, 200, res.body);
      return res;
    };
    const setDisabled = (userId: string, disabled: boolean) =>
      t.inject({
        method: 'PATCH',
        url: `/api/users/${userId}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { disabled },
      });

    before(async () => {
      t = await startTestApp({ dialect });
      user = await createUser(t, 'key-owner@example.com');
      admin = await createUser(t, 'key-admin@example.com', 'admin');
      other = await createUser(t, 'key-other@example.com');
    });
    after(() => t.close());

    it('shows a new key once, with the ck- prefix; lists never show the key or its hash', async () => {
      const created = await createKey(user.accessToken, { name: 'laptop' });
      assert.match(created.key, KEY_FORMAT);
      assert.equal(created.prefix, created.key.slice(0, created.prefix.length));
      assert.ok(created.prefix.startsWith('ck-') && created.prefix.length < 20);
      assert.equal(created.user_id, user.id);
      assert.equal(created.name, 'laptop');
      assert.equal(created.revoked_at, null);
      assert.equal(created.last_used_at, null);
      assert.equal(created.expires_at, null);
      assert.equal('key_hash' in created, false);

      const hash = sha256(created.key);
      const list = await listKeys(user.accessToken);
      const one = await getKey(user.accessToken, created.id);
      assert.equal(one.statusCode, 200);
      for (const res of [list, one]) {
        assert.ok(!res.body.includes(created.key), 'the key must not be shown again');
        assert.ok(!res.body.includes(hash), 'the key hash must never be shown');
        assert.ok(!res.body.includes('key_hash'));
      }
      const listed = (list.json().data as Record<string, unknown>[]).find((k) => k.id === created.id);
      assert.ok(listed, 'the new key is listed');
      assert.equal(listed.key, undefined);
      assert.equal(listed.prefix, created.prefix);
      assert.equal(one.json().key, undefined);

      // Only the hash is stored.
      const row = await t.database.db
        .selectFrom('api_keys')
        .selectAll()
        .where('id', '=', created.id)
        .executeTakeFirstOrThrow();
      assert.equal(row.key_hash, hash);
      assert.ok(!Object.values(row).includes(created.key));
    });

    it('authenticates as its owner on GET /api/me', async () => {
      const created = await createKey(user.accessToken);
      const res = await getMe(created.key);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().id, user.id);
      assert.equal(res.json().email, user.email);
    });

    it('records last_used_at when the key is used', async () => {
      const created = await createKey(user.accessToken);
      assert.equal((await getKey(user.accessToken, created.id)).json().last_used_at, null);
      const before = Date.now();
      assert.equal((await getMe(created.key)).statusCode, 200);
      const lastUsed = (await getKey(user.accessToken, created.id)).json().last_used_at as string | null;
      assert.ok(lastUsed, 'last_used_at is set after use');
      const at = Date.parse(lastUsed);
      assert.ok(at >= before - 1000 && at <= Date.now() + 1000, `last_used_at ${lastUsed}`);
    });

    it('stops working at once when revoked; the owner’s other keys keep working', async () => {
      const doomed = await createKey(user.accessToken, { name: 'doomed' });
      const kept = await createKey(user.accessToken, { name: 'kept' });
      assert.equal((await getMe(doomed.key)).statusCode, 200);

      const res = await t.inject({
        method: 'DELETE',
        url: `/api/keys/${doomed.id}`,
        headers: bearer(user.accessToken),
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().id, doomed.id);
      assert.ok(res.json().revoked_at);
      assert.equal(res.json().key, undefined);

      assertError(await getMe(doomed.key), 401, 'invalid_api_key');
      assertError(
        await t.inject({ method: 'GET', url: '/api/keys', headers: bearer(doomed.key) }),
        401,
        'invalid_api_key',
      );
      assert.equal((await getMe(kept.key)).statusCode, 200);
      // The revoked key stays visible to its owner, marked revoked.
      assert.ok((await getKey(user.accessToken, doomed.id)).json().revoked_at);
    });

    it('a key can revoke itself', async () => {
      const created = await createKey(user.accessToken);
      const res = await t.inject({
        method: 'DELETE',
        url: `/api/keys/${created.id}`,
        headers: bearer(created.key),
      });
      assert.equal(res.statusCode, 200, res.body);
      assertError(await getMe(created.key), 401, 'invalid_api_key');
    });

    it('is refused once expired', async () => {
      const created = await createKey(user.accessToken, { name: 'expiring', expires_in_days: 30 });
      const expiresAt = Date.parse(created.expires_at!);
      const inThirtyDays = Date.now() + 30 * 86_400_000;
      assert.ok(Math.abs(expiresAt - inThirtyDays) < 60_000, `expires_at ${created.expires_at}`);

      // Thirty days pass (before the key is first used: a key in use is cached for a moment, and a cached
      // key's own expiry is covered by the key cache's tests).
      await t.database.db
        .updateTable('api_keys')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .where('id', '=', created.id)
        .execute();
      assertError(await getMe(created.key), 401, 'invalid_api_key');
    });

    it('is refused while its owner is disabled', async () => {
      const owner = await createUser(t, 'disabled-key-owner@example.com');
      const created = await createKey(owner.accessToken);
      assert.equal((await getMe(created.key)).statusCode, 200);

      assert.equal((await setDisabled(owner.id, true)).statusCode, 200);
      assertError(await getMe(created.key), 401, 'invalid_api_key');

      assert.equal((await setDisabled(owner.id, false)).statusCode, 200);
      assert.equal((await getMe(created.key)).statusCode, 200);
    });

    it('refuses malformed and unknown keys with 401 invalid_api_key', async () => {
      assertError(await getMe('ck-short'), 401, 'invalid_api_key');
      assertError(await getMe(`ck-${randomBytes(32).toString('base64url')}`), 401, 'invalid_api_key');
      const real = await createKey(user.accessToken);
      // One character changed in the middle is another (unknown) key.
      const i = 20;
      const altered = `${real.key.slice(0, i)}${real.key[i] === 'A' ? 'B' : 'A'}${real.key.slice(i + 1)}`;
      assertError(await getMe(altered), 401, 'invalid_api_key');
    });

    it('acts with its owner’s current role', async () => {
      const owner = await createUser(t, 'promoted-key-owner@example.com');
      const created = await createKey(owner.accessToken);
      const listUsers = () => t.inject({ method: 'GET', url: '/api/users', headers: bearer(created.key) });
      const setRole = (role: string) =>
        t.inject({
          method: 'PATCH',
          url: `/api/users/${owner.id}`,
          headers: bearer(TEST_MASTER_KEY),
          payload: { role },
        });
      assertError(await listUsers(), 403, 'forbidden');
      assert.equal((await setRole('admin')).statusCode, 200);
      assert.equal((await listUsers()).statusCode, 200);
      assert.equal((await setRole('user')).statusCode, 200);
      assertError(await listUsers(), 403, 'forbidden');
    });

    it('lets an admin (or the master key) create a key for another user, which acts as that user', async () => {
      const created = await createKey(admin.accessToken, { name: 'for other', user_id: other.id });
      assert.equal(created.user_id, other.id);
      const me = await getMe(created.key);
      assert.equal(me.statusCode, 200);
      assert.equal(me.json().id, other.id);
      assert.equal(me.json().role, 'user');
      // The key is the other user's: they see it, and it grants no admin rights.
      const theirs = (await listKeys(other.accessToken)).json().data as PublicKey[];
      assert.ok(theirs.some((k) => k.id === created.id));
      assertError(
        await t.inject({ method: 'GET', url: '/api/users', headers: bearer(created.key) }),
        403,
        'forbidden',
      );

      const byMaster = await createKey(TEST_MASTER_KEY, { name: 'from master', user_id: other.id });
      assert.equal(byMaster.user_id, other.id);
      assert.equal((await getMe(byMaster.key)).json().id, other.id);

      assertError(
        await t.inject({
          method: 'POST',
          url: '/api/keys',
          headers: bearer(admin.accessToken),
          payload: { name: 'nobody', user_id: 'usr_does_not_exist' },
        }),
        404,
        'not_found',
      );
    });

    it('forbids a non-admin from creating a key for someone else (403), and creates nothing', async () => {
      const countOthers = async () =>
        ((await listKeys(TEST_MASTER_KEY, `?user_id=${other.id}&limit=100`)).json().data as unknown[]).length;
      const before = await countOthers();
      for (const userId of [other.id, admin.id, 'usr_does_not_exist']) {
        assertError(
          await t.inject({
            method: 'POST',
            url: '/api/keys',
            headers: bearer(user.accessToken),
            payload: { name: 'sneaky', user_id: userId },
          }),
          403,
          'forbidden',
        );
      }
      assert.equal(await countOthers(), before);
      // Naming oneself is fine.
      const own = await createKey(user.accessToken, { name: 'own', user_id: user.id });
      assert.equal(own.user_id, user.id);
    });

    it('requires user_id when the master key creates a key (400)', async () => {
      assertError(
        await t.inject({
          method: 'POST',
          url: '/api/keys',
          headers: bearer(TEST_MASTER_KEY),
          payload: { name: 'x' },
        }),
        400,
        'invalid_request',
        'user_id',
      );
    });

    it('validates the request and requires credentials', async () => {
      const post = (
        payload: Record<string, unknown>,
        headers: Record<string, string> = bearer(user.accessToken),
      ) => t.inject({ method: 'POST', url: '/api/keys', headers, payload });
      assertError(await post({}), 400, 'validation_error', 'name');
      assertError(await post({ name: '' }), 400, 'validation_error');
      assertError(await post({ name: 'x', expires_in_days: 0 }), 400, 'validation_error');
      assertError(await post({ name: 'x' }, {}), 401, 'unauthorized');
      assertError(await getKey(user.accessToken, 'key_does_not_exist'), 404, 'not_found');
    });
  });
}
