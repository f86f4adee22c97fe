import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

for (const dialect of DIALECTS) {
  describe(`audit trail (${dialect})`, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp({ dialect });
    });
    after(() => t.close());

    it('records logins, key and account changes and admin writes — never a password', async () => {
      const user = await createUser(t, 'audited@example.com');
      const failed = await t.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email: 'audited@example.com', password: 'wrong-password-123' },
      });
      assert.equal(failed.statusCode, 401);
      const key = await t.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'audited key' },
      });
      assert.equal(key.statusCode, 201);
      const disable = await t.inject({
        method: 'PATCH',
        url: `/api/users/${user.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { disabled: true },
      });
      assert.equal(disable.statusCode, 200);
      await t.inject({ method: 'GET', url: '/api/me', headers: bearer(TEST_MASTER_KEY) });

      // Audit rows are written once the response has gone out: the last write's may lag a few ms.
      let events: Record<string, unknown>[] = [];
      await eventually(
        async () => {
          const res = await t.inject({
            method: 'GET',
            url: '/api/admin/audit',
            headers: bearer(TEST_MASTER_KEY),
          });
          assert.equal(res.statusCode, 200);
          events = (res.json() as { data: Record<string, unknown>[] }).data;
          return events.some((e) => e.action === 'PATCH /api/users/:id');
        },
        2_000,
        'the PATCH audit row',
      );
      const find = (action: string, outcome: string) =>
        events.find((e) => e.action === action && e.outcome === outcome);
      assert.equal(find('auth.login', 'failure')?.subject, 'audited@example.com');
      assert.equal(find('auth.login', 'success')?.subject, 'audited@example.com');
      assert.equal(find('POST /api/keys', 'success')?.actor_user_id, user.id);
      assert.equal(find('POST /api/keys', 'success')?.actor_email, 'audited@example.com');
      const patch = find('PATCH /api/users/:id', 'success');
      assert.equal(patch?.actor_via, 'master_key');
      assert.equal(patch?.actor_email, null, 'the master key is no user');
      assert.equal(patch?.target_id, user.id);
      assert.ok(!events.some((e) => String(e.action).startsWith('GET')), 'reads are not audited');
      const everything = JSON.stringify(events) + t.logText();
      assert.ok(!everything.includes('wrong-password-123'));
      assert.ok(!everything.includes(user.password));
      assert.match(t.logText(), /audit: auth.login failure/);
    });

    it("keeps the master key's trail: each of its model calls is a row, readable at once", async () => {
      const requests = await Promise.all(
        Array.from({ length: 30 }, () =>
          t.inject({
            method: 'POST',
            url: '/v1/chat/completions',
            headers: bearer(TEST_MASTER_KEY),
            payload: { model: 'demo', messages: [{ role: 'user', content: 'hi' }] },
          }),
        ),
      );
      for (const r of requests) assert.equal(r.statusCode, 200, r.body);
      // Rows are written in batches; the audit API writes this replica's waiting rows before it reads.
      const res = await t.inject({
        method: 'GET',
        url: `/api/admin/audit?limit=500&action=${encodeURIComponent('POST /v1/chat/completions')}`,
        headers: bearer(TEST_MASTER_KEY),
      });
      const rows = (res.json() as { data: Record<string, unknown>[] }).data;
      const ids = new Set(requests.map((r) => r.headers['x-request-id']));
      const mine = rows.filter((e) => ids.has(e.request_id as string));
      assert.equal(mine.length, 30);
      for (const e of mine) assert.equal(e.actor_via, 'master_key');
    });

    it('is for admins only', async () => {
      const user = await createUser(t, 'not-admin@example.com');
      const res = await t.inject({
        method: 'GET',
        url: '/api/admin/audit',
        headers: bearer(user.accessToken),
      });
      assert.equal(res.statusCode, 403);
    });
  });
}
