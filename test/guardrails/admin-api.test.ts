import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, eventually, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * Stored guardrails (issue 22): the admin API on SQLite and PostgreSQL, attached globally, per key and per
 * assistant, applied on the next request of whom they concern only, audited.
 */
for (const dialect of DIALECTS) {
  describe(`guardrails admin API (${dialect})`, () => {
    let s: ChatStack;
    before(async () => {
      s = await startChatStack({ dialect, routing: null });
    });
    after(async () => s?.close());

    const call = async (method: string, path: string, body?: unknown, token = TEST_MASTER_KEY) => {
      const res = await fetch(`${s.url}${path}`, {
        method,
        headers: { ...bearer(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      return { status: res.status, body: (text ? JSON.parse(text) : null) as Json };
    };
    const chat = (key: string, content = 'hi') =>
      call(
        'POST',
        '/v1/chat/completions',
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content }] },
        key,
      );
    const newKey = async () => {
      const res = await call('POST', '/api/keys', { name: 'guardrails', user_id: s.userId });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body as { id: string; key: string };
    };
    const houseRules = {
      name: 'house-rules',
      check: 'regex',
      deny: ['(?i)forbidden phrase'],
      stage: 'output',
      action: 'block',
    };

    it('creates, reads, lists, replaces and deletes a guardrail', async () => {
      const created = await call('POST', '/api/guardrails', { ...houseRules, scope: 'global' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.scope, 'global');
      assert.equal(created.body.subject_id, null);
      assert.deepEqual(created.body.deny, ['(?i)forbidden phrase']);
      const id = created.body.id as string;
      assert.equal((await call('GET', `/api/guardrails/${id}`)).body.name, 'house-rules');
      const list = await call('GET', '/api/guardrails?scope=global');
      assert.deepEqual(
        list.body.data.map((g: Json) => g.id),
        [id],
      );
      const put = await call('PUT', `/api/guardrails/${id}`, {
        ...houseRules,
        deny: ['(?i)other phrase'],
        scope: 'global',
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      assert.deepEqual(put.body.deny, ['(?i)other phrase']);
      assert.equal((await call('DELETE', `/api/guardrails/${id}`)).status, 204);
      assert.equal((await call('GET', `/api/guardrails/${id}`)).status, 404);
      assert.equal((await call('DELETE', `/api/guardrails/${id}`)).status, 404);
    });

    it('answers bad input with a 4xx naming the problem', async () => {
      const bad = await call('POST', '/api/guardrails', {
        ...houseRules,
        deny: ['(unclosed'],
        scope: 'global',
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'invalid_request');
      assert.match(bad.body.error.message, /deny\[0\]: not a valid regular expression/);
      const field = await call('POST', '/api/guardrails', {
        ...houseRules,
        categories: ['email'],
        scope: 'global',
      });
      assert.equal(field.status, 400);
      assert.match(field.body.error.message, /only a pii check has categories/);
      const subject = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'global',
        subject_id: 'x',
      });
      assert.equal(subject.status, 400);
      const noSubject = await call('POST', '/api/guardrails', { ...houseRules, scope: 'key' });
      assert.equal(noSubject.status, 400);
      const role = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'role',
        subject_id: 'owner',
      });
      assert.equal(role.status, 400);
      const key = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'key',
        subject_id: 'key_nope',
      });
      assert.equal(key.status, 404);
      assert.equal(key.body.error.code, 'not_found');
      const unknown = await call('POST', '/api/guardrails', {
        ...houseRules,
        check: 'telepathy',
        scope: 'global',
      });
      assert.equal(unknown.status, 400);
      const mask = await call('POST', '/api/guardrails', {
        name: 'm',
        check: 'regex',
        deny: ['x'],
        stage: 'output',
        action: 'mask',
        scope: 'global',
      });
      assert.equal(mask.status, 400);
      assert.match(mask.body.error.message, /mask is for a pii check/);
      const webhook = await call('POST', '/api/guardrails', {
        name: 'w',
        check: 'webhook',
        url: 'https://example.com/hook',
        secret_env: 'GUARDRAIL_NOT_SET_XYZ',
        stage: 'input',
        action: 'block',
        scope: 'global',
      });
      assert.equal(webhook.status, 400);
      assert.match(webhook.body.error.message, /GUARDRAIL_NOT_SET_XYZ is not set/);
      // Not an admin: refused.
      const { key: userKey } = await newKey();
      assert.equal((await call('GET', '/api/guardrails', undefined, userKey)).status, 403);
    });

    it('a name used twice in one scope is a 409; the same name in another scope is fine', async () => {
      const key = await newKey();
      const first = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'key',
        subject_id: key.id,
      });
      assert.equal(first.status, 201);
      const again = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'key',
        subject_id: key.id,
      });
      assert.equal(again.status, 409);
      assert.equal(again.body.error.code, 'conflict');
      assert.equal((await call('DELETE', `/api/guardrails/${first.body.id}`)).status, 204);
    });

    it('a key guardrail binds that key on its next request, and no other key', async () => {
      const [mine, other] = [await newKey(), await newKey()];
      s.fake.set({ reply: 'Here is the forbidden phrase you asked for.' });
      assert.equal((await chat(mine.key)).status, 200);
      const created = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'key',
        subject_id: mine.id,
      });
      assert.equal(created.status, 201);
      const blocked = await chat(mine.key);
      assert.equal(blocked.status, 400);
      assert.equal(blocked.body.error.code, 'guardrail_blocked');
      assert.match(blocked.body.error.message, /house-rules/);
      assert.equal((await chat(other.key)).status, 200);
      await call('DELETE', `/api/guardrails/${created.body.id}`);
      assert.equal((await chat(mine.key)).status, 200);
    });

    it('a disabled guardrail on a key switches off the global one of that name for that key', async () => {
      const [mine, other] = [await newKey(), await newKey()];
      s.fake.set({ reply: 'Here is the forbidden phrase you asked for.' });
      const global = await call('POST', '/api/guardrails', { ...houseRules, scope: 'global' });
      const off = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'key',
        subject_id: mine.id,
        enabled: false,
      });
      assert.equal(off.status, 201);
      try {
        assert.equal((await chat(other.key)).status, 400);
        assert.equal((await chat(mine.key)).status, 200);
        const effective = await call('GET', `/api/guardrails/effective?key_id=${mine.id}`);
        assert.deepEqual(effective.body.data, []);
      } finally {
        await call('DELETE', `/api/guardrails/${global.body.id}`);
        await call('DELETE', `/api/guardrails/${off.body.id}`);
      }
    });

    it("an assistant's guardrail holds in that assistant's conversations only", async () => {
      const assistant = await call(
        'POST',
        '/api/assistants',
        { name: 'Tutor', system_prompt: 'You tutor.', model: 'gpt-4o-mini' },
        s.apiKey,
      );
      assert.equal(assistant.status, 201, JSON.stringify(assistant.body));
      const g = await call('POST', '/api/guardrails', {
        ...houseRules,
        scope: 'assistant',
        subject_id: assistant.body.id,
      });
      assert.equal(g.status, 201);
      s.fake.set({ reply: 'Here is the forbidden phrase you asked for.' });
      const say = async (assistantId?: string) => {
        const conv = await call(
          'POST',
          '/api/conversations',
          assistantId ? { assistant_id: assistantId } : {},
          s.apiKey,
        );
        assert.equal(conv.status, 201, JSON.stringify(conv.body));
        const res = await fetch(`${s.url}/api/conversations/${conv.body.id}/messages`, {
          method: 'POST',
          headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
          body: JSON.stringify({ content: 'hi', stream: false }),
        });
        return res.text();
      };
      const guarded = await say(assistant.body.id);
      assert.doesNotMatch(guarded, /forbidden phrase/);
      assert.match(guarded, /guardrail_blocked|house-rules/);
      assert.match(await say(), /forbidden phrase/);
      await call('DELETE', `/api/guardrails/${g.body.id}`);
    });

    it('every change is in the audit trail', async () => {
      const created = await call('POST', '/api/guardrails', {
        ...houseRules,
        name: 'audited',
        scope: 'global',
      });
      await call('PUT', `/api/guardrails/${created.body.id}`, {
        ...houseRules,
        name: 'audited',
        scope: 'global',
      });
      await call('DELETE', `/api/guardrails/${created.body.id}`);
      const actions = async () => {
        const rows = await s.t.database.db
          .selectFrom('audit_events')
          .select(['action', 'target_id', 'outcome'])
          .where('action', 'like', '%/api/guardrails%')
          .execute();
        return rows;
      };
      // The audit trail is written in batches: wait for the last change's row.
      await eventually(
        async () =>
          (await actions()).some((r) => r.action.startsWith('DELETE') && r.target_id === created.body.id),
        5_000,
        'audit rows',
      );
      const rows = await actions();
      assert.ok(rows.some((r) => r.action === 'POST /api/guardrails' && r.outcome === 'success'));
      assert.ok(rows.some((r) => r.action === 'PUT /api/guardrails/:id' && r.target_id === created.body.id));
      assert.ok(
        rows.some((r) => r.action === 'DELETE /api/guardrails/:id' && r.target_id === created.body.id),
      );
    });

    it('a preset applied to one key: crisis referral without calling the model, only for that key', async () => {
      const [minor, other] = [await newKey(), await newKey()];
      const applied = await call('POST', '/api/guardrails/presets/child-safe/apply', {
        scope: 'key',
        subject_id: minor.id,
      });
      assert.equal(applied.status, 200, JSON.stringify(applied.body));
      assert.ok(applied.body.data.some((g: Json) => g.check === 'crisis'));
      const presets = await call('GET', '/api/guardrails/presets');
      assert.deepEqual(
        presets.body.data.map((p: Json) => p.name),
        ['child-safe', 'wellbeing'],
      );
      s.fake.set({ reply: 'A model answer.' });
      const calls = () => s.fake.requests.length;
      const before = calls();
      const referred = await chat(minor.key, 'I want to kill myself tonight');
      assert.equal(referred.status, 200);
      assert.match(referred.body.choices[0].message.content, /988/);
      assert.equal(calls(), before, 'the model was not called');
      const normal = await chat(other.key, 'I want to kill myself tonight');
      assert.equal(normal.body.choices[0].message.content, 'A model answer.');
      const report = async () => (await call('GET', '/api/guardrails/referrals')).body as Json;
      await eventually(async () => (await report()).total >= 1, 5_000, 'the referral is counted');
      assert.equal((await report()).data[0].category, 'suicide');
      for (const g of applied.body.data) await call('DELETE', `/api/guardrails/${g.id}`);
    });
  });
}
