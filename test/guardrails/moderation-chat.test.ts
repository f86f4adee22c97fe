import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type Json, moderationStack } from './stack.js';

/**
 * Issue 22: a moderation check with "any chat model with a classification prompt". The classifier is the
 * routing file's alias `moderator`, served by the second fake upstream (OpenAI's Chat Completions shape, as
 * the fake is written: https://platform.openai.com/docs/api-reference/chat/create), so what it was asked and
 * what it answers are in the test's hand; the answer to the user comes from the first.
 */
describe('moderation by a chat model through the router', () => {
  const s = moderationStack({ thresholds: { hate: 0.5, violence: 0.8 } });
  const chat = (content: string) =>
    s.post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });
  const classifierCalls = () => s.backup.requests.filter((r) => r.path.endsWith('/chat/completions'));
  const answerCalls = () => s.fake.requests.filter((r) => r.path.endsWith('/chat/completions')).length;

  it('asks the model with the classification prompt and blocks on a category over its threshold', async () => {
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({ reply: '{"flagged": true, "categories": {"hate": 0.97, "violence": 0.1}}' });
    const asked = classifierCalls().length;
    const answers = answerCalls();
    const res = await chat('a hateful message');
    assert.equal(res.status, 400);
    const body = (await res.json()) as Json;
    assert.equal(body.error.code, 'guardrail_blocked');
    assert.match(body.error.message, /chat-mod/);
    assert.equal(answerCalls(), answers, 'the model that answers was not called');
    const request = classifierCalls()[asked]!.body as Json;
    assert.equal(request.model, 'gpt-4o-mini');
    assert.match(request.messages[0].content, /content moderation classifier/);
    assert.match(request.messages[1].content, /<text>\na hateful message\n<\/text>/);
    // The Messages API answers the same block in its own error shape.
    const messages = await s.post('/v1/messages', {
      model: 'gpt-4o-mini',
      max_tokens: 50,
      messages: [{ role: 'user', content: 'a hateful message' }],
    });
    assert.equal(messages.status, 400);
    assert.equal(((await messages.json()) as Json).type, 'error');
  });

  it('lets through what scores under the thresholds, also when the JSON comes in a Markdown fence', async () => {
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({
      reply: '```json\n{"flagged": false, "categories": {"hate": 0.02, "violence": 0.5}}\n```',
    });
    const res = await chat('a kind message');
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as Json).choices[0].message.content, 'A friendly answer.');
  });

  it('a malformed classification fails closed by default, and open when on_error is open', async () => {
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({ reply: 'I am sorry, I cannot classify this text.' });
    const closed = await chat('some message');
    assert.equal(closed.status, 400);
    assert.equal(((await closed.json()) as Json).error.code, 'guardrail_blocked');
    // Scores out of range are malformed too.
    s.backup.set({ reply: '{"flagged": true, "categories": {"hate": 7}}' });
    assert.equal((await chat('some message')).status, 400);

    // A stored global guardrail of the same name replaces the routing file's: the same check, failing open.
    const stored = await fetch(`${s.url}/api/guardrails`, {
      method: 'POST',
      headers: { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'chat-mod',
        check: 'moderation',
        model: 'moderator',
        thresholds: { hate: 0.5 },
        stage: 'input',
        action: 'block',
        on_error: 'open',
        timeout_ms: 5_000,
        scope: 'global',
      }),
    });
    assert.equal(stored.status, 201, await stored.clone().text());
    s.backup.set({ reply: 'not JSON at all' });
    const open = await chat('some message');
    assert.equal(open.status, 200);
    assert.equal(((await open.json()) as Json).choices[0].message.content, 'A friendly answer.');
  });

  it('a moderation check needs a url or a model', async () => {
    const res = await fetch(`${s.url}/api/guardrails`, {
      method: 'POST',
      headers: { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'nothing',
        check: 'moderation',
        stage: 'input',
        action: 'block',
        scope: 'global',
      }),
    });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as Json).error.message, /url, or a chat model/);
  });
});
