import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, type TestUser } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * Issue 22: a crisis referral flags the conversation for the operator, and guardrails attached to a role apply
 * to that role's conversations. Over HTTP, streaming and not, on every database available.
 */
for (const dialect of DIALECTS) {
  describe(`conversation flags and role guardrails (${dialect})`, () => {
    let s: ChatStack;
    let admin: TestUser;
    before(async () => {
      s = await startChatStack({
        dialect,
        routing: (backup) => ({
          ...defaultRouting(backup),
          guardrails: [{ name: 'crisis', check: 'crisis', messages: { en: 'Please call 988 now.' } }],
        }),
      });
      admin = await createUser(s.t, `flags-admin-${dialect}@example.com`, 'admin');
    });
    after(async () => {
      await s?.close();
    });

    const call = async (method: string, path: string, token: string, body?: unknown) => {
      const res = await fetch(`${s.url}${path}`, {
        method,
        headers: { ...bearer(token), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, text, json: (text.startsWith('{') ? JSON.parse(text) : {}) as Json };
    };
    const newConversation = async (token: string) =>
      (await call('POST', '/api/conversations', token, { model: 'gpt-4o-mini' })).json.id as string;
    const say = (token: string, id: string, content: string, stream: boolean) =>
      call('POST', `/api/conversations/${id}/messages`, token, { content, stream });
    const flaggedList = async () =>
      (await call('GET', '/api/admin/conversations?flagged=true', admin.accessToken)).json.data as Json[];

    it('a crisis referral flags the conversation: admins list it, its user is not shown a label', async () => {
      s.fake.set({ reply: 'Sure, here is a plan for your week.' });
      const calm = await newConversation(s.apiKey);
      assert.match((await say(s.apiKey, calm, 'help me plan my week', false)).text, /plan for your week/);
      const json = await newConversation(s.apiKey);
      assert.match((await say(s.apiKey, json, 'I want to kill myself', false)).text, /Please call 988/);
      const streamed = await newConversation(s.apiKey);
      assert.match((await say(s.apiKey, streamed, 'I want to end my life', true)).text, /Please call 988/);

      const listed = await flaggedList();
      const ids = listed.map((c) => c.id);
      assert.ok(ids.includes(json) && ids.includes(streamed), JSON.stringify(listed));
      assert.ok(!ids.includes(calm), 'a conversation without a referral is not flagged');
      const row = listed.find((c) => c.id === json)!;
      assert.equal(row.user_id, s.userId);
      assert.equal(row.flagged.reason, 'crisis');
      assert.equal(row.flagged.guardrail, 'crisis');
      assert.equal(row.flagged.category, 'suicide');
      assert.ok(!Number.isNaN(Date.parse(row.flagged.at)));
      assert.doesNotMatch(JSON.stringify(listed), /kill myself|end my life/, 'never the text');

      // The user's own view carries no flag at all.
      const own = await call('GET', `/api/conversations/${json}`, s.apiKey);
      assert.equal(own.status, 200);
      assert.equal('flagged' in own.json, false);
      const ownList = await call('GET', '/api/conversations', s.apiKey);
      assert.ok((ownList.json.data as Json[]).every((c) => !('flagged' in c)));
      // Only admins list flagged conversations, and only flagged ones.
      assert.equal((await call('GET', '/api/admin/conversations?flagged=true', s.apiKey)).status, 403);
      const unflagged = await call('GET', '/api/admin/conversations?flagged=false', admin.accessToken);
      assert.equal(unflagged.status, 400);
      assert.equal(unflagged.json.error.code, 'invalid_request');

      // A second referral in the same conversation: the flag is the latest one's.
      assert.match((await say(s.apiKey, streamed, '我被家暴了', false)).text, /Please call 988|12356/);
      const again = (await flaggedList()).filter((c) => c.id === streamed);
      assert.equal(again.length, 1);
      assert.equal(again[0]!.flagged.category, 'abuse');

      // A deleted conversation leaves the list.
      assert.equal((await call('DELETE', `/api/conversations/${json}`, s.apiKey)).status, 204);
      assert.ok(!(await flaggedList()).some((c) => c.id === json));
    });

    it("an admin's own conversation list shows the flag (the console's badge)", async () => {
      const flagged = await newConversation(admin.accessToken);
      const calm = await newConversation(admin.accessToken);
      await say(admin.accessToken, flagged, '我不想活了', true);
      const list = (await call('GET', '/api/conversations', admin.accessToken)).json.data as Json[];
      assert.equal(list.find((c) => c.id === flagged)?.flagged?.reason, 'crisis');
      assert.equal(list.find((c) => c.id === calm)?.flagged, null);
      const one = await call('GET', `/api/conversations/${flagged}`, admin.accessToken);
      assert.equal(one.json.flagged.category, 'suicide');
    });

    it("a role's guardrails apply to that role's conversations (admin vs user)", async () => {
      for (const [role, phrase] of [
        ['admin', 'admin-only-secret'],
        ['user', 'user-only-secret'],
      ] as const) {
        const created = await call('POST', '/api/guardrails', admin.accessToken, {
          name: `no-${role}-phrase`,
          check: 'regex',
          deny: [phrase],
          stage: 'input',
          action: 'block',
          scope: 'role',
          subject_id: role,
        });
        assert.equal(created.status, 201, created.text);
      }
      s.fake.set({ reply: 'Noted.' });
      // Each message in a conversation of its own: a blocked message stays in its conversation's history.
      const reply = async (token: string, content: string, stream: boolean) =>
        (await say(token, await newConversation(token), content, stream)).text;
      for (const stream of [false, true]) {
        // The admin role's guardrail holds for the admin; the user role's does not apply to them.
        assert.match(await reply(admin.accessToken, 'say admin-only-secret', stream), /no-admin-phrase/);
        assert.match(await reply(admin.accessToken, 'say user-only-secret', stream), /Noted\./);
        // And the other way round for a user.
        assert.match(await reply(s.apiKey, 'say user-only-secret', stream), /no-user-phrase/);
        assert.match(await reply(s.apiKey, 'say admin-only-secret', stream), /Noted\./);
      }
    });
  });
}
