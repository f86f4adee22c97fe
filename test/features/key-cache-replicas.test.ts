import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { createTestDatabase, DIALECTS, markSuiteRan, type TestDatabase } from '../helpers/databases.js';

const redisUrl = process.env.TEST_REDIS_URL;
/** Bound on waiting for B to hear of a change: a hang fails by name, it is not a speed assertion. */
const NOTICE_TIMEOUT_MS = 10_000;

/**
 * Resolves when replica `t` has applied an invalidation of (kind, id) — its key cache forgets the entries, then
 * tells its CredentialWatch, which is what this listens to. Event-based: no polling, no sleeping.
 */
function noticeOn(t: TestApp, kind: 'key' | 'user', id: string): Promise<void> {
  const watch = t.app.credentials;
  const original = watch.notice.bind(watch);
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      watch.notice = original;
      reject(new Error(`replica never heard of ${kind}:${id}`));
    }, NOTICE_TIMEOUT_MS);
    watch.notice = (k, i) => {
      original(k, i);
      if (k === kind && i === id) {
        clearTimeout(timer);
        watch.notice = original;
        resolve();
      }
    };
  });
}

const models = (t: TestApp, key: string) =>
  t.inject({ method: 'GET', url: '/v1/models', headers: bearer(key) });

// Issue 26: a key's resolved principal is cached on each replica (no database read per request), and a
// revocation, a disabled owner or a role change made on one replica binds every other one through Redis
// pub/sub — as soon as the message arrives, not when the cache entry's TTL runs out.
for (const dialect of DIALECTS) {
  describe(`API key cache across replicas (${dialect} + Redis)`, {
    skip: !redisUrl && 'TEST_REDIS_URL is not set',
  }, () => {
    let testDb: TestDatabase;
    let a: TestApp;
    let b: TestApp;

    before(async () => {
      markSuiteRan('redis');
      testDb = await createTestDatabase(dialect);
      const env = { REDIS_URL: redisUrl!, RATE_LIMIT_ENABLED: 'false' };
      a = await startTestApp({ testDb, env });
      b = await startTestApp({ testDb, env, migrate: false });
    });
    after(async () => {
      await b?.close();
      await a?.close();
      await testDb?.drop();
    });

    const keyOf = async (email: string) => {
      const user = await createUser(a, email);
      const created = await a.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'replicated' },
      });
      assert.equal(created.statusCode, 201, created.body);
      const { id, key } = created.json() as { id: string; key: string };
      return { user, keyId: id, key };
    };

    it('a key revoked on A is refused on B once B hears of it', async () => {
      const { user, keyId, key } = await keyOf(`revoke-replica-${dialect}@example.com`);
      // B resolves (and caches) the key's principal.
      assert.equal((await models(b, key)).statusCode, 200);
      assert.equal((await models(b, key)).statusCode, 200);
      const heard = noticeOn(b, 'key', keyId);
      const revoked = await a.inject({
        method: 'DELETE',
        url: `/api/keys/${keyId}`,
        headers: bearer(user.accessToken),
      });
      assert.equal(revoked.statusCode, 200, revoked.body);
      await heard;
      const refused = await models(b, key);
      assert.equal(refused.statusCode, 401, refused.body);
      assert.equal(refused.json().error.code, 'invalid_api_key');
    });

    it('a user disabled on A has their key refused on B, and a role change on A applies on B', async () => {
      const { user, key } = await keyOf(`role-replica-${dialect}@example.com`);
      const adminOnly = () => b.inject({ method: 'GET', url: '/api/users', headers: bearer(key) });
      assert.equal((await adminOnly()).statusCode, 403);

      let heard = noticeOn(b, 'user', user.id);
      const promoted = await a.inject({
        method: 'PATCH',
        url: `/api/users/${user.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { role: 'admin' },
      });
      assert.equal(promoted.statusCode, 200, promoted.body);
      await heard;
      assert.equal((await adminOnly()).statusCode, 200);

      heard = noticeOn(b, 'user', user.id);
      const disabled = await a.inject({
        method: 'PATCH',
        url: `/api/users/${user.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { disabled: true },
      });
      assert.equal(disabled.statusCode, 200, disabled.body);
      await heard;
      const refused = await models(b, key);
      assert.equal(refused.statusCode, 401, refused.body);
    });
    it('a key restricted to some models on A is held to them on B; a user deleted on A has their key refused on B', async () => {
      const { user, keyId, key } = await keyOf(`models-replica-${dialect}@example.com`);
      const chat = () =>
        b.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          headers: bearer(key),
          payload: { model: 'demo', messages: [{ role: 'user', content: 'hi' }] },
        });
      assert.equal((await chat()).statusCode, 200);
      let heard = noticeOn(b, 'key', keyId);
      const restricted = await a.inject({
        method: 'PATCH',
        url: `/api/keys/${keyId}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { allowed_models: ['another-model'] },
      });
      assert.equal(restricted.statusCode, 200, restricted.body);
      await heard;
      const refused = await chat();
      assert.equal(refused.statusCode, 403, refused.body);
      assert.equal(refused.json().error.code, 'model_not_allowed');

      heard = noticeOn(b, 'user', user.id);
      const deleted = await a.inject({
        method: 'DELETE',
        url: `/api/users/${user.id}`,
        headers: bearer(TEST_MASTER_KEY),
      });
      assert.equal(deleted.statusCode, 200, deleted.body);
      await heard;
      assert.equal((await models(b, key)).statusCode, 401);
    });
  });
}
