import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, TEST_MASTER_KEY, type TestUser } from '../helpers/app.js';
import { type ChatStack, defaultRouting, sseData, startChatStack } from '../helpers/chat-stack.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * Issue 22 and the response cache: an answer cached under one set of guardrails is never served under
 * another. A guardrail added through the admin API after an answer was cached applies to the next identical
 * request (it is checked, not served from the cache), on /v1 and in the conversation API.
 */
describe('guardrails and the response cache', () => {
  let s: ChatStack;
  let admin: TestUser;
  before(async () => {
    s = await startChatStack({ env: { RESPONSE_CACHE_TTL_SECONDS: '600' }, routing: defaultRouting });
    admin = await createUser(s.t, 'cache-admin@example.com', 'admin');
  });
  after(async () => {
    await s?.close();
  });

  const post = (path: string, body: unknown, token = s.apiKey) =>
    fetch(`${s.url}${path}`, {
      method: 'POST',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const addGuardrail = async (body: Json) => {
    const res = await post('/api/guardrails', body, TEST_MASTER_KEY);
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as Json).id as string;
  };
  const upstreamCalls = () => s.fake.requests.filter((r) => r.path.endsWith('/chat/completions')).length;

  it('/v1: a cached answer is not served once a guardrail that applies is added (JSON and stream)', async () => {
    s.fake.set({ reply: 'Zebras are striped horses.' });
    const ask = (stream: boolean) =>
      post('/v1/chat/completions', {
        model: 'gpt-4o-mini',
        temperature: 0,
        stream,
        messages: [{ role: 'user', content: 'Tell me about zebras.' }],
      });
    const first = await ask(false);
    assert.equal(first.headers.get('x-cache'), 'miss');
    const calls = upstreamCalls();
    const second = await ask(false);
    assert.equal(second.headers.get('x-cache'), 'hit', 'the cache works before any guardrail');
    assert.equal(upstreamCalls(), calls);

    const id = await addGuardrail({
      name: 'no-stripes',
      check: 'regex',
      deny: ['striped'],
      stage: 'output',
      action: 'block',
      scope: 'key',
      subject_id: s.apiKeyId,
    });
    const blocked = await ask(false);
    assert.equal(blocked.status, 400);
    assert.equal(((await blocked.json()) as Json).error.code, 'guardrail_blocked');
    const streamed = await (await ask(true)).text();
    assert.doesNotMatch(streamed, /striped/, 'never from the cache, in any chunk');
    assert.match(streamed, /guardrail_blocked/);

    // Switched off again: the answer made under the same (empty) set of guardrails is served again.
    const del = await fetch(`${s.url}/api/guardrails/${id}`, {
      method: 'DELETE',
      headers: bearer(TEST_MASTER_KEY),
    });
    assert.equal(del.status, 204);
    const again = await ask(false);
    assert.equal(again.headers.get('x-cache'), 'hit');
    assert.match(((await again.json()) as Json).choices[0].message.content, /striped/);
  });

  it('a guardrail of another role leaves the cache as it was', async () => {
    s.fake.set({ reply: 'Owls hunt at night.' });
    const ask = () =>
      post('/v1/chat/completions', {
        model: 'gpt-4o-mini',
        temperature: 0,
        messages: [{ role: 'user', content: 'Tell me about owls.' }],
      });
    assert.equal((await ask()).headers.get('x-cache'), 'miss');
    await addGuardrail({
      name: 'admins-no-owls',
      check: 'regex',
      deny: ['owls?'],
      stage: 'input',
      action: 'block',
      scope: 'role',
      subject_id: 'admin',
    });
    assert.equal((await ask()).headers.get('x-cache'), 'hit');
  });

  it('conversation API: a cached reply is checked once a guardrail is added to the assistant', async () => {
    const assistant = (await (
      await post(
        '/api/assistants',
        {
          name: 'Cached',
          system_prompt: 'Be brief.',
          model: 'gpt-4o-mini',
          params: { cache_responses: true },
        },
        admin.accessToken,
      )
    ).json()) as Json;
    assert.ok(assistant.id, JSON.stringify(assistant));
    s.fake.set({ reply: 'Penguins cannot fly.' });
    const reply = async (stream: boolean) => {
      const conv = (await (
        await post('/api/conversations', { assistant_id: assistant.id }, admin.accessToken)
      ).json()) as Json;
      const res = await post(
        `/api/conversations/${conv.id}/messages`,
        { content: 'Tell me about penguins.', stream },
        admin.accessToken,
      );
      return res.text();
    };
    assert.match(await reply(false), /Penguins cannot fly/);
    const calls = upstreamCalls();
    assert.match(await reply(false), /Penguins cannot fly/);
    assert.equal(upstreamCalls(), calls, 'the second reply came from the cache');

    await addGuardrail({
      name: 'no-flight-talk',
      check: 'regex',
      deny: ['cannot fly'],
      stage: 'output',
      action: 'block',
      scope: 'assistant',
      subject_id: assistant.id,
    });
    for (const stream of [false, true]) {
      const text = await reply(stream);
      const data = stream ? sseData(text).join('\n') : text;
      assert.doesNotMatch(data, /cannot fly/);
      assert.match(data, /no-flight-talk/);
    }
  });
});
