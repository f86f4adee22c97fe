import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/** Issue 22: verdicts counted per guardrail, stage and action over a range (the console's usage page). */
for (const dialect of DIALECTS) {
  describe(`guardrail verdicts over a range (${dialect})`, () => {
    let s: ChatStack;
    before(async () => {
      s = await startChatStack({
        dialect,
        routing: (backup) => ({
          ...defaultRouting(backup),
          guardrails: [
            { name: 'pii', check: 'pii', stage: 'input', action: 'redact' },
            {
              name: 'house-rules',
              check: 'regex',
              deny: ['(?i)forbidden phrase'],
              stage: 'input',
              action: 'block',
            },
          ],
        }),
      });
    });
    after(async () => {
      await s?.close();
    });

    const chat = (content: string) =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }),
      });
    const verdicts = async (query: string, token = TEST_MASTER_KEY) => {
      const res = await fetch(`${s.url}/api/guardrails/verdicts?${query}`, { headers: bearer(token) });
      return { status: res.status, body: (await res.json()) as Json };
    };

    it('counts what each guardrail did today, none on other days; admins only', async () => {
      assert.equal((await chat('say the Forbidden Phrase')).status, 400);
      assert.equal((await chat('say the forbidden phrase again')).status, 400);
      assert.equal((await chat('write to jane@example.com')).status, 200);
      assert.equal((await chat('hello')).status, 200);
      // Yesterday to tomorrow: the test may run across midnight (UTC).
      const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
      const [yesterday, today, tomorrow] = [-1, 0, 1].map((d) => dayOf(Date.now() + d * 86_400_000));
      const { status, body } = await verdicts(`from=${yesterday}&to=${tomorrow}`);
      assert.equal(status, 200);
      assert.deepEqual(body.data, [
        { guardrail: 'house-rules', stage: 'input', action: 'block', verdicts: 2 },
        { guardrail: 'pii', stage: 'input', action: 'redact', verdicts: 1 },
      ]);
      assert.equal(body.total, 3);
      assert.deepEqual((await verdicts('from=2020-01-01&to=2020-01-31')).body, { total: 0, data: [] });
      const backwards = await verdicts(`from=${today}&to=2020-01-01`);
      assert.equal(backwards.status, 400);
      assert.equal(backwards.body.error.code, 'invalid_request');
      assert.equal((await verdicts(`from=${yesterday}&to=${tomorrow}`, s.apiKey)).status, 403);
    });
  });
}
