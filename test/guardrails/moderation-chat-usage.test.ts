import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type Json, moderationStack } from './stack.js';

const CLEAN = '{"flagged": false, "categories": {"hate": 0.01}}';
const admin = { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' };
const tokens = (row: { prompt_tokens: number; completion_tokens: number }) =>
  row.prompt_tokens + row.completion_tokens;

/**
 * A moderation check's chat model works for the caller: its call is a ledger row of theirs (protocol
 * `guardrail`) and its tokens count against their budget and their tokens per minute. Both upstreams are the
 * OpenAI Chat Completions fake (https://platform.openai.com/docs/api-reference/chat/create), which reports
 * `usage` as documented.
 */
describe('a moderation check by a chat model is the caller’s usage', () => {
  // Rate limits on, every default off: only the limits a test sets on its own key apply.
  const s = moderationStack(
    {},
    {
      RATE_LIMIT_ENABLED: 'true',
      RATE_LIMIT_PER_MINUTE: '0',
      RATE_LIMIT_PER_HOUR: '0',
      RATE_LIMIT_TOKENS_PER_MINUTE: '0',
      RATE_LIMIT_CONCURRENT_STREAMS: '0',
      RATE_LIMIT_IP_PER_MINUTE: '0',
    },
  );

  it('records the classifier call under the caller, shows it in the usage API and charges their budget', async () => {
    const budget = await fetch(`${s.url}/api/budgets/user/${s.userId}`, {
      method: 'PUT',
      headers: admin,
      body: JSON.stringify({ period: 'day', limit_tokens: 10_000_000 }),
    });
    assert.equal(budget.status, 204, await budget.clone().text());
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({ reply: CLEAN });

    const res = await s.post('/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'a kind message' }],
    });
    assert.equal(res.status, 200);
    const requestId = res.headers.get('x-request-id')!;
    await res.json();

    const answer = await s.usageRow(requestId);
    const classifier = await s.usageRow(`${requestId}:moderation`);
    assert.equal(classifier.protocol, 'guardrail');
    assert.equal(classifier.user_id, s.userId);
    assert.equal(classifier.api_key_id, s.apiKeyId);
    assert.equal(classifier.model, 'moderator');
    assert.equal(classifier.provider, 'backup');
    assert.ok(classifier.prompt_tokens > 0);
    // The fake counts one completion token per word of its answer.
    assert.equal(classifier.completion_tokens, 5);
    // gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
    const cost = (classifier.prompt_tokens * 0.15 + classifier.completion_tokens * 0.6) / 1e6;
    assert.ok(Math.abs(Number(classifier.cost_usd) - cost) < 1e-9, `${classifier.cost_usd} vs ${cost}`);

    const usage = await fetch(`${s.url}/api/usage?group_by=protocol&user_id=${s.userId}`, {
      headers: bearer(TEST_MASTER_KEY),
    });
    assert.equal(usage.status, 200);
    const guardrail = ((await usage.json()) as Json).data.find((r: Json) => r.key === 'guardrail');
    assert.ok(guardrail, 'the usage API has a guardrail row');
    assert.equal(guardrail.requests, 1);
    assert.equal(guardrail.prompt_tokens, classifier.prompt_tokens);
    assert.equal(guardrail.completion_tokens, 5);

    const status = await fetch(`${s.url}/api/budgets/user/${s.userId}`, { headers: bearer(TEST_MASTER_KEY) });
    const day = ((await status.json()) as Json).data.find((b: Json) => b.period === 'day');
    assert.equal(day.spent_tokens, tokens(answer) + tokens(classifier), 'the budget counts both calls');
  });

  it('counts the classifier call’s tokens against the caller’s tokens per minute, but not as a request', async () => {
    // A key of its own: a minute of its own, with no other test's tokens in it.
    const created = await fetch(`${s.url}/api/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'tokens per minute', user_id: s.userId }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const key = (await created.json()) as { id: string; key: string };
    const limit = async (name: string, value: number) => {
      const res = await fetch(`${s.url}/api/limits/key/${key.id}`, {
        method: 'PUT',
        headers: admin,
        body: JSON.stringify({ limit: name, value }),
      });
      assert.equal(res.status, 204, await res.clone().text());
    };
    const chat = () =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(key.key), 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: 'a kind message' }],
        }),
      });
    const header = (res: Response, name: string) => Number(res.headers.get(name));
    const rows = async (res: Response) => {
      assert.equal(res.status, 200, await res.clone().text());
      await res.json();
      const id = res.headers.get('x-request-id')!;
      return { answer: await s.usageRow(id), classifier: await s.usageRow(`${id}:moderation`) };
    };
    const roomy = 1_000_000;
    await limit('tokens_per_minute', roomy);
    await limit('requests_per_minute', 100);
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({ reply: CLEAN });

    const first = await chat();
    const one = await rows(first);
    // In a fresh minute, what the first request's check counted is its prompt's estimate alone.
    const estimate = roomy - header(first, 'x-ratelimit-remaining-tokens');
    assert.ok(estimate > 0 && one.classifier.completion_tokens > 0);
    const second = await chat();
    const two = await rows(second);
    assert.equal(
      header(first, 'x-ratelimit-remaining-tokens') - header(second, 'x-ratelimit-remaining-tokens'),
      tokens(one.answer) + tokens(one.classifier),
      'the second request sees the first one’s answer and classification in the minute’s tokens',
    );
    assert.equal(header(first, 'x-ratelimit-remaining'), 99);
    assert.equal(header(second, 'x-ratelimit-remaining'), 98, 'a classification is not a request');

    // Room for the answers so far and one more prompt, none for the classifications: the next request is
    // refused with the usual 429 before any model is called, the classifier included.
    await limit('tokens_per_minute', tokens(one.answer) + tokens(two.answer) + estimate);
    const answers = s.fake.requests.length;
    const asked = s.backup.requests.length;
    const third = await chat();
    const body = (await third.json()) as Json;
    assert.equal(third.status, 429, JSON.stringify(body));
    assert.equal(body.error.code, 'rate_limited');
    assert.match(body.error.message, /tokens per minute/);
    assert.ok(third.headers.get('retry-after'));
    assert.equal(s.fake.requests.length, answers, 'the model that answers was not called');
    assert.equal(s.backup.requests.length, asked, 'the classifier was not called');
  });
});
