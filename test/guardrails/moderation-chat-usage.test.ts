import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * A moderation check's chat model works for the caller: its call is a ledger row of theirs (protocol
 * `guardrail`) and its tokens count against their budget. Both upstreams are the OpenAI Chat Completions
 * fake (https://platform.openai.com/docs/api-reference/chat/create), which reports `usage` as documented.
 */
describe('a moderation check by a chat model is the caller’s usage', () => {
  let s: ChatStack;
  before(async () => {
    s = await startChatStack({
      routing: (backup) => {
        const routing = defaultRouting(backup);
        return {
          ...routing,
          models: [
            ...(routing.models ?? []),
            { name: 'moderator', deployments: [{ provider: 'backup', model: 'gpt-4o-mini' }] },
          ],
          guardrails: [
            {
              name: 'chat-mod',
              check: 'moderation',
              model: 'moderator',
              stage: 'input',
              action: 'block',
              timeout_ms: 5_000,
            },
          ],
        };
      },
    });
  });
  after(async () => {
    await s?.close();
  });

  it('records the classifier call under the caller, shows it in the usage API and charges their budget', async () => {
    const admin = { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' };
    const budget = await fetch(`${s.url}/api/budgets/user/${s.userId}`, {
      method: 'PUT',
      headers: admin,
      body: JSON.stringify({ period: 'day', limit_tokens: 10_000_000 }),
    });
    assert.equal(budget.status, 204, await budget.clone().text());
    s.fake.set({ reply: 'A friendly answer.' });
    s.backup.set({ reply: '{"flagged": false, "categories": {"hate": 0.01}}' });

    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'a kind message' }] }),
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
    const tokens = (r: typeof answer) => r.prompt_tokens + r.completion_tokens;
    assert.equal(day.spent_tokens, tokens(answer) + tokens(classifier), 'the budget counts both calls');
  });
});
