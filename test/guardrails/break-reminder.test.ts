import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;
const MINUTE = 60_000;

/**
 * Minor mode's break reminder (issue 22: "a break reminder after a configurable session length, default 3
 * hours") in the conversation API, with the server's clock in the test's hand. A session is a user's
 * continuous activity: messages less than 30 minutes apart. With PostgreSQL the stack has Redis too, where
 * sessions are shared by replicas.
 */
for (const dialect of DIALECTS.filter((d) => d !== 'mysql')) {
  describe(`the break reminder after a session length (${dialect})`, () => {
    let s: ChatStack;
    const start = Date.parse('2026-03-02T15:00:00Z');
    let clock = start;
    const at = (minute: number) => {
      clock = start + minute * MINUTE;
    };
    before(async () => {
      s = await startChatStack({ dialect, routing: defaultRouting, now: () => clock });
      // The child-safe preset's break reminder (180 minutes), applied to the role `user`.
      const applied = await fetch(`${s.url}/api/guardrails/presets/child-safe/apply`, {
        method: 'POST',
        headers: { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' },
        body: JSON.stringify({ scope: 'role', subject_id: 'user' }),
      });
      assert.equal(applied.status, 200, await applied.clone().text());
    });
    after(async () => {
      await s?.close();
    });

    const BREAK = /a good moment to take a break/;
    const say = async (token: string, conversation: string, content: string, stream: boolean) => {
      const res = await fetch(`${s.url}/api/conversations/${conversation}/messages`, {
        method: 'POST',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: JSON.stringify({ content, stream }),
      });
      return res.text();
    };
    const newConversation = async (token: string) =>
      (
        (await (
          await fetch(`${s.url}/api/conversations`, {
            method: 'POST',
            headers: { ...bearer(token), 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini' }),
          })
        ).json()) as Json
      ).id as string;

    it('reminds once the session reaches 3 hours, not before, then again 3 hours later; a pause starts anew', async () => {
      s.fake.set({ reply: 'Here is the next exercise.' });
      const other = await createUser(s.t, `break-other-${dialect}@example.com`);
      const mine = await newConversation(s.apiKey);
      const theirs = await newConversation(other.accessToken);
      // Every 20 minutes for 3 hours: no reminder until the session has lasted 180 minutes.
      for (let minute = 0; minute < 180; minute += 20) {
        at(minute);
        const text = await say(s.apiKey, mine, `exercise at minute ${minute}`, minute % 40 === 0);
        assert.match(text, /next exercise/);
        assert.doesNotMatch(text, BREAK, `no break reminder at minute ${minute}`);
      }
      // Minute 180: the session has lasted 3 hours. Any conversation of the user's carries it (streaming too).
      at(180);
      assert.match(await say(s.apiKey, await newConversation(s.apiKey), 'one more', true), BREAK);
      // Once per period: the next message does not repeat it.
      at(200);
      assert.doesNotMatch(await say(s.apiKey, mine, 'and another', false), BREAK);
      // Another user, active only now, has a session of their own.
      assert.doesNotMatch(await say(other.accessToken, theirs, 'hello', false), BREAK);
      // Three more hours of activity: reminded again at minute 360.
      for (let minute = 220; minute < 360; minute += 20) {
        at(minute);
        assert.doesNotMatch(await say(s.apiKey, mine, `minute ${minute}`, false), BREAK);
      }
      at(360);
      assert.match(await say(s.apiKey, mine, 'minute 360', false), BREAK);
      // A pause of 30 minutes or more ends the session: the next message starts a new one.
      at(400);
      assert.doesNotMatch(await say(s.apiKey, mine, 'back after a pause', false), BREAK);
    });
  });
}
