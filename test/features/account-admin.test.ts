// Issue 23's admin leftovers through the API: deleting a user, an admin's password reset, and an API key
// restricted to some models — on every database the suite has (SQLite always, PostgreSQL / MySQL when set).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { withLimitsTables } from '../../src/features/limits/tables.js';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  type TestApp,
  type TestUser,
} from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';
import { multipart } from '../helpers/files.js';
import { linkIn, type Mailbox, startMailbox } from '../helpers/smtp.js';

/** Bounded: audit rows are written just after the response goes out. */
async function auditRow(t: TestApp, action: string, targetId: string, outcome = 'success') {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const res = await t.inject({ method: 'GET', url: '/api/admin/audit', headers: bearer(TEST_MASTER_KEY) });
    const rows = (res.json() as { data: Record<string, unknown>[] }).data;
    const row = rows.find((e) => e.action === action && e.target_id === targetId && e.outcome === outcome);
    if (row) return row;
    if (Date.now() > deadline) throw new Error(`no audit row ${action} for ${targetId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const chat = (t: TestApp, token: string, model = 'demo') =>
  t.inject({
    method: 'POST',
    url: '/v1/chat/completions',
    headers: bearer(token),
    payload: { model, messages: [{ role: 'user', content: 'hello' }] },
  });

for (const dialect of DIALECTS) {
  describe(`admin actions on accounts (${dialect})`, () => {
    let t: TestApp;
    let admin: TestUser;
    before(async () => {
      t = await startTestApp({ dialect });
      admin = await createUser(t, 'boss@example.com', 'admin');
    });
    after(() => t?.close());

    const del = (token: string, id: string) =>
      t.inject({ method: 'DELETE', url: `/api/users/${id}`, headers: bearer(token) });
    const reset = (token: string, id: string, payload: Record<string, unknown>) =>
      t.inject({ method: 'POST', url: `/api/users/${id}/password`, headers: bearer(token), payload });

    it('deletes a user: keys and sessions stop at once, their conversations go, usage stays, the address is free', async () => {
      const user = await createUser(t, 'leaver@example.com');
      const keyRes = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'leaver key' },
      });
      const key = keyRes.json() as { id: string; key: string };
      assert.equal((await chat(t, key.key)).statusCode, 200);
      const conv = await t.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(user.accessToken),
        payload: { title: 'private notes' },
      });
      assert.equal(conv.statusCode, 201, conv.body);
      const upload = multipart('notes.txt', 'my private notes', 'file', 'text/plain');
      const file = await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...bearer(user.accessToken), ...upload.headers },
        payload: upload.payload,
      });
      assert.equal(file.statusCode, 201, file.body);
      // The key is cached by now (it was just used): deleting must still stop it.
      assert.equal((await chat(t, key.key)).statusCode, 200);

      const res = await del(admin.accessToken, user.id);
      assert.equal(res.statusCode, 200, res.body);
      const body = res.json() as {
        email: string;
        removed: { conversations: number; files: number };
        kept: string;
      };
      assert.equal(body.email, 'leaver@example.com');
      assert.equal(body.removed.conversations, 1);
      assert.equal(body.removed.files, 1);
      assert.match(body.kept, /usage/);

      assertError(await chat(t, key.key), 401, 'invalid_api_key');
      assertError(
        await t.inject({ method: 'GET', url: '/api/me', headers: bearer(user.accessToken) }),
        401,
        'invalid_token',
      );
      const refreshed = await t.inject({
        method: 'POST',
        url: '/api/auth/refresh',
        payload: { refresh_token: user.refreshToken },
      });
      assert.equal(refreshed.statusCode, 401, refreshed.body);
      const login = await t.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email: user.email, password: user.password },
      });
      assert.equal(login.statusCode, 401, 'the old address and password sign nobody in');

      const conversations = await t.database.db
        .selectFrom('conversations')
        .select('id')
        .where('user_id', '=', user.id)
        .execute();
      assert.equal(conversations.length, 0);
      const files = await t.database.db
        .withTables<{ files: { id: string; user_id: string } }>()
        .selectFrom('files')
        .select('id')
        .where('user_id', '=', user.id)
        .execute();
      assert.equal(files.length, 0, 'their files are gone');
      const usage = await t.inject({
        method: 'GET',
        url: `/api/usage?group_by=user&user_id=${user.id}`,
        headers: bearer(admin.accessToken),
      });
      assert.equal((usage.json() as { data: { requests: number }[] }).data[0]?.requests, 2, usage.body);

      const users = await t.inject({ method: 'GET', url: '/api/users', headers: bearer(admin.accessToken) });
      assert.ok(!(users.json() as { data: { id: string }[] }).data.some((u) => u.id === user.id));
      assertError(
        await t.inject({ method: 'GET', url: `/api/users/${user.id}`, headers: bearer(admin.accessToken) }),
        404,
        'not_found',
      );
      assertError(await del(admin.accessToken, user.id), 404, 'not_found');
      // The address may have an account again.
      await createUser(t, 'leaver@example.com');

      const audit = await auditRow(t, 'DELETE /api/users/:id', user.id);
      assert.equal(audit.outcome, 'success');
      assert.equal(audit.actor_user_id, admin.id);
    });

    it('deleting a user removes the budgets and rate-limit overrides of the user and their keys', async () => {
      const user = await createUser(t, 'limited-leaver@example.com');
      const keyRes = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'limited key' },
      });
      assert.equal(keyRes.statusCode, 201, keyRes.body);
      const key = keyRes.json() as { id: string; key: string };
      const put = (path: string, payload: Record<string, unknown>) =>
        t.inject({ method: 'PUT', url: path, headers: bearer(admin.accessToken), payload });
      for (const [scope, id] of [
        ['user', user.id],
        ['key', key.id],
      ]) {
        assert.equal(
          (await put(`/api/budgets/${scope}/${id}`, { period: 'day', limit_usd: 5 })).statusCode,
          204,
        );
        assert.equal(
          (await put(`/api/limits/${scope}/${id}`, { limit: 'requests_per_minute', value: 7 })).statusCode,
          204,
        );
      }
      // The key's budgets and limits are in use (cached) when the account goes.
      assert.equal((await chat(t, key.key)).statusCode, 200);

      const res = await del(admin.accessToken, user.id);
      assert.equal(res.statusCode, 200, res.body);
      const { removed } = res.json() as { removed: Record<string, number> };
      assert.equal(removed.budgets, 2);
      assert.equal(removed.limit_overrides, 2);
      const subjects = [user.id, key.id];
      const left = async (table: 'budgets' | 'limit_overrides') =>
        (
          await withLimitsTables(t.database.db)
            .selectFrom(table)
            .select('id')
            .where('subject_id', 'in', subjects)
            .execute()
        ).length;
      assert.equal(await left('budgets'), 0);
      assert.equal(await left('limit_overrides'), 0);
      // Nothing can be set for them again: the user and their keys are gone (404).
      assertError(
        await put(`/api/budgets/user/${user.id}`, { period: 'day', limit_usd: 5 }),
        404,
        'not_found',
      );
      assertError(
        await put(`/api/limits/key/${key.id}`, { limit: 'requests_per_minute', value: 7 }),
        404,
        'not_found',
      );
    });

    it('refuses an unknown id (404), deleting yourself (409), the last admin (409) and a plain user (403)', async () => {
      const plain = await createUser(t, 'plain-deleter@example.com');
      assertError(await del(admin.accessToken, 'usr_nobody'), 404, 'not_found');
      assertError(await del(admin.accessToken, admin.id), 409, 'conflict');
      // The master key has no account: the only admin left is still refused.
      assertError(await del(TEST_MASTER_KEY, admin.id), 409, 'conflict');
      assertError(await del(plain.accessToken, admin.id), 403, 'forbidden');
      assertError(
        await reset(plain.accessToken, admin.id, { password: 'a-new-long-password' }),
        403,
        'forbidden',
      );
      const me = await t.inject({ method: 'GET', url: '/api/me', headers: bearer(admin.accessToken) });
      assert.equal(me.statusCode, 200, 'nothing was deleted');
      // With a second admin, the first may go.
      const second = await createUser(t, 'second-admin@example.com', 'admin');
      const gone = await createUser(t, 'third-admin@example.com', 'admin');
      assert.equal((await del(second.accessToken, gone.id)).statusCode, 200);
    });

    it('lets an admin set a new password without mail: every session of the user ends', async () => {
      const user = await createUser(t, 'forgetful@example.com');
      assertError(await reset(admin.accessToken, user.id, {}), 400, 'invalid_request', 'password');
      assertError(await reset(admin.accessToken, user.id, { password: 'short' }), 400, 'weak_password');
      assertError(
        await reset(admin.accessToken, 'usr_nobody', { password: 'a-new-long-password' }),
        404,
        'not_found',
      );
      const res = await reset(admin.accessToken, user.id, { password: 'a-new-long-password' });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { outcome: 'password_set' });
      assertError(
        await t.inject({ method: 'GET', url: '/api/me', headers: bearer(user.accessToken) }),
        401,
        'invalid_token',
      );
      const login = (password: string) =>
        t.inject({ method: 'POST', url: '/api/auth/login', payload: { email: user.email, password } });
      assert.equal((await login(user.password)).statusCode, 401);
      assert.equal((await login('a-new-long-password')).statusCode, 200);
      assert.equal((await auditRow(t, 'POST /api/users/:id/password', user.id)).outcome, 'success');
    });

    it('restricts a key to some models: others are refused (403), a change applies at once, lists show owners, budgets and limits', async () => {
      const user = await createUser(t, 'restricted@example.com');
      const created = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'only-other', allowed_models: ['some-other-model'] },
      });
      assert.equal(created.statusCode, 201, created.body);
      const key = created.json() as { id: string; key: string; allowed_models: string[] };
      assert.deepEqual(key.allowed_models, ['some-other-model']);
      assertError(await chat(t, key.key), 403, 'model_not_allowed', 'model');
      // A conversation through the key is held to the same models.
      const conv = await t.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(key.key),
        payload: { model: 'demo' },
      });
      assert.equal(conv.statusCode, 201, conv.body);
      assertError(
        await t.inject({
          method: 'POST',
          url: `/api/conversations/${conv.json().id}/messages`,
          headers: bearer(key.key),
          payload: { content: 'hello', stream: false },
        }),
        403,
        'model_not_allowed',
      );
      // The key is shown only the models it may use (none of those configured here), the admin every one.
      const listed = async (token: string) =>
        (
          (await t.inject({ method: 'GET', url: '/v1/models', headers: bearer(token) })).json() as {
            data: { id: string }[];
          }
        ).data.map((m) => m.id);
      assert.deepEqual(await listed(key.key), []);
      assert.ok((await listed(admin.accessToken)).includes('demo'));
      assert.equal(
        (await t.inject({ method: 'GET', url: '/v1/models/demo', headers: bearer(key.key) })).statusCode,
        404,
      );
      const patch = (token: string, allowed_models: string[] | null) =>
        t.inject({
          method: 'PATCH',
          url: `/api/keys/${key.id}`,
          headers: bearer(token),
          payload: { allowed_models },
        });
      assertError(await patch(user.accessToken, null), 403, 'forbidden');
      assert.equal((await patch(admin.accessToken, ['demo'])).statusCode, 200);
      assert.equal((await chat(t, key.key)).statusCode, 200, 'the cached key follows the change');
      assertError(await patch(admin.accessToken, []), 400, 'validation_error');

      await t.inject({
        method: 'PUT',
        url: `/api/budgets/key/${key.id}`,
        headers: bearer(admin.accessToken),
        payload: { period: 'month', limit_usd: 12.5 },
      });
      await t.inject({
        method: 'PUT',
        url: `/api/limits/key/${key.id}`,
        headers: bearer(admin.accessToken),
        payload: { limit: 'requests_per_minute', value: 30 },
      });
      const list = await t.inject({
        method: 'GET',
        url: '/api/keys?all=true',
        headers: bearer(admin.accessToken),
      });
      const row = (list.json() as { data: Record<string, unknown>[] }).data.find((k) => k.id === key.id);
      assert.deepEqual(row?.allowed_models, ['demo']);
      assert.deepEqual(row?.budgets, [{ period: 'month', limit_usd: 12.5, limit_tokens: null }]);
      assert.deepEqual(row?.rate_limits, { requests_per_minute: 30 });
      assert.equal(row?.owner_email, 'restricted@example.com', 'the list names the owner by email');
    });
  });
}

describe('an admin’s password reset with mail configured', () => {
  let mailbox: Mailbox;
  before(async () => {
    mailbox = await startMailbox();
  });
  after(() => mailbox?.close());

  it('mails the user a reset link that works', async (t) => {
    const app = await startTestApp({ env: mailbox.env() });
    t.after(() => app.close());
    const admin = await createUser(app, 'mail-admin@example.com', 'admin');
    const user = await createUser(app, 'mailed-reset@example.com');
    const res = await app.inject({
      method: 'POST',
      url: `/api/users/${user.id}/password`,
      headers: bearer(admin.accessToken),
      payload: {},
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(res.json(), { outcome: 'reset_mailed' });
    const [mail] = await mailbox.waitFor('mailed-reset@example.com');
    assert.ok(mail);
    const token = linkIn(mail).searchParams.get('token');
    assert.ok(token);
    const confirmed = await app.inject({
      method: 'POST',
      url: '/api/auth/password-reset/confirm',
      payload: { token, password: 'chosen-by-the-user-1' },
    });
    assert.equal(confirmed.statusCode, 204, confirmed.body);
    const login = await app.inject({
      method: 'POST',
      url: '/api/auth/login',
      payload: { email: user.email, password: 'chosen-by-the-user-1' },
    });
    assert.equal(login.statusCode, 200);
  });
});
