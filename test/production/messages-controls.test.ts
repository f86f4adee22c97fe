import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { BudgetStore } from '../../src/features/limits/budget-store.js';
import { bearer } from '../helpers/app.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * Issue 20: every production control of /v1/chat/completions applies to the Messages API too, through the
 * same gateway: rate limits and budgets (reserved before the call, settled after), and usage per protocol.
 */

const ask = (client: Anthropic, max_tokens = 50, stream = false) =>
  stream
    ? client.messages
        .stream({ model: 'gpt-4o-mini', max_tokens, messages: [{ role: 'user', content: 'hi' }] })
        .finalMessage()
    : client.messages.create({
        model: 'gpt-4o-mini',
        max_tokens,
        messages: [{ role: 'user', content: 'hi' }],
      });

describe('rate limits on /v1/messages', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PER_MINUTE: '2' } });
  });
  after(() => stack.close());

  it('refuses the request over the limit with a RateLimitError, before any provider call', async () => {
    const client = new Anthropic({ baseURL: stack.url, apiKey: stack.apiKey, maxRetries: 0 });
    await ask(client);
    await ask(client, 50, true);
    const calls = stack.fake.requests.length;
    await assert.rejects(ask(client), (err) => {
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      assert.equal((err.error as { error: { type: string } }).error.type, 'rate_limit_error');
      assert.ok(Number(err.headers?.get('retry-after')) >= 1);
      return true;
    });
    assert.equal(stack.fake.requests.length, calls);
  });
});

describe('budgets and usage on /v1/messages', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ env: { RATE_LIMIT_ENABLED: 'true' } });
  });
  after(() => stack.close());

  it('refuses a request whose worst case would pass the budget (not retried); settles what was spent', async () => {
    await new BudgetStore(stack.t.database.db).set({
      scope: 'key',
      subjectId: stack.apiKeyId,
      period: 'day',
      limitUsd: 0.001,
      limitTokens: null,
    });
    // The SDK would retry a 429 twice; an exhausted budget tells it not to (x-should-retry: false).
    const client = new Anthropic({ baseURL: stack.url, apiKey: stack.apiKey, maxRetries: 2 });
    const calls = stack.fake.requests.length;
    await assert.rejects(ask(client, 4096), (err) => {
      assert.ok(err instanceof Anthropic.RateLimitError, String(err));
      assert.equal(err.headers?.get('x-should-retry'), 'false');
      return true;
    });
    assert.equal(stack.fake.requests.length, calls);
    await ask(client, 50, true);
    const status = await fetch(`${stack.url}/api/budgets/key/${stack.apiKeyId}`, {
      headers: bearer(stack.apiKey),
    });
    const [day] = ((await status.json()) as { data: { spent_usd: number }[] }).data;
    assert.ok(day!.spent_usd > 0 && day!.spent_usd < 0.001, `spent ${day!.spent_usd}`);

    const usage = await fetch(`${stack.url}/api/usage?group_by=protocol`, { headers: bearer(stack.apiKey) });
    assert.equal(usage.status, 200);
    const rows = ((await usage.json()) as { data: { key: string; requests: number; errors: number }[] }).data;
    // The refused request and the served one, both under their protocol.
    const messages = rows.find((r) => r.key === 'messages');
    assert.equal(messages?.requests, 2);
    assert.equal(messages?.errors, 1);
    const filtered = await fetch(`${stack.url}/api/usage?group_by=model&protocol=chat_completions`, {
      headers: bearer(stack.apiKey),
    });
    assert.deepEqual(((await filtered.json()) as { data: unknown[] }).data, []);
  });
});

describe('the response cache on /v1/messages', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ env: { RESPONSE_CACHE_TTL_SECONDS: '3600' } });
  });
  after(() => stack.close());

  it('answers a repeated deterministic request from the cache, as a message and as a stream', async () => {
    const client = new Anthropic({ baseURL: stack.url, apiKey: stack.apiKey, maxRetries: 0 });
    const params = {
      model: 'gpt-4o-mini',
      max_tokens: 40,
      temperature: 0,
      messages: [{ role: 'user' as const, content: 'cache this' }],
    };
    const first = await client.messages.create(params).withResponse();
    assert.equal(first.response.headers.get('x-cache'), 'miss');
    const calls = stack.fake.requests.length;
    const again = await client.messages.create(params).withResponse();
    assert.equal(again.response.headers.get('x-cache'), 'hit');
    assert.deepEqual(again.data.content, first.data.content);
    const streamed = await client.messages.stream(params).finalMessage();
    assert.deepEqual(streamed.content, first.data.content);
    assert.equal(stack.fake.requests.length, calls, 'no upstream call for the hits');
    const row = await stack.usageRow(again.response.headers.get('x-request-id') ?? '');
    assert.equal(row.cached, 1);
    assert.equal(row.protocol, 'messages');
  });
});
