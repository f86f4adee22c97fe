import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BudgetStore } from '../../src/features/limits/budget-store.js';
import { tokenCounts } from '../../src/providers/tokens.js';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, sseData, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = any;

const chatRequest = (extra: Record<string, unknown> = {}) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  temperature: 0,
  ...extra,
});

async function post(
  stack: ChatStack,
  body: unknown,
  headers: Record<string, string> = {},
  key = stack.apiKey,
) {
  return fetch(`${stack.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(key), ...headers },
    body: JSON.stringify(body),
  });
}

const upstreamCalls = (stack: ChatStack) =>
  stack.fake.requests.filter((r) => r.path === '/v1/chat/completions').length;

for (const dialect of DIALECTS) {
  describe(`response cache (${dialect})`, () => {
    let stack: ChatStack;
    before(async () => {
      stack = await startChatStack({ dialect, env: { RESPONSE_CACHE_TTL_SECONDS: '3600' } });
    });
    after(() => stack.close());

    it('answers a repeated deterministic request from the cache: X-Cache hit, no upstream call, zero cost', async () => {
      const body = chatRequest({ messages: [{ role: 'user', content: `cache me ${dialect}` }] });
      const first = await post(stack, body);
      assert.equal(first.status, 200);
      assert.equal(first.headers.get('x-cache'), 'miss');
      const firstJson = (await first.json()) as Json;
      const calls = upstreamCalls(stack);
      // The store is written after the answer; give it a moment.
      await new Promise((r) => setTimeout(r, 50));
      const second = await post(stack, body);
      assert.equal(second.headers.get('x-cache'), 'hit');
      const secondJson = (await second.json()) as Json;
      assert.deepEqual(secondJson.choices, firstJson.choices);
      assert.equal(upstreamCalls(stack), calls, 'the hit did not reach the upstream');
      const row = await stack.usageRow(second.headers.get('x-request-id')!);
      assert.equal(row.cached, 1);
      assert.equal(row.cost_usd, 0);
      const metrics = await (await fetch(`${stack.url}/metrics`)).text();
      assert.match(metrics, /colloquy_cache_requests_total\{[^}]*result="hit"[^}]*\} [1-9]/);
    });

    it('replays a cached answer as a stream, chunks in order, ending with [DONE]', async () => {
      const body = chatRequest({
        messages: [{ role: 'user', content: `stream me ${dialect}` }],
        stream: true,
      });
      const first = await post(stack, body);
      const firstText = await first.text();
      assert.equal(first.headers.get('x-cache'), 'miss');
      await new Promise((r) => setTimeout(r, 50));
      const calls = upstreamCalls(stack);
      const second = await post(stack, body);
      assert.equal(second.headers.get('x-cache'), 'hit');
      const events = sseData(await second.text());
      assert.equal(events.at(-1), '[DONE]');
      const content = (list: string[]) =>
        list
          .filter((d) => d !== '[DONE]')
          .map((d) => JSON.parse(d).choices?.[0]?.delta?.content ?? '')
          .join('');
      assert.equal(content(events), content(sseData(firstText)));
      assert.equal(upstreamCalls(stack), calls);
    });

    it('keeps tenants apart, honours Cache-Control and never caches non-deterministic requests', async () => {
      const body = chatRequest({ messages: [{ role: 'user', content: `tenant ${dialect}` }] });
      await post(stack, body);
      await new Promise((r) => setTimeout(r, 50));
      // The master key acts for nobody: never cached, never served from another tenant's cache.
      const other = await post(stack, body, {}, TEST_MASTER_KEY);
      assert.equal(other.headers.get('x-cache'), null);
      const noStore = await post(stack, body, { 'cache-control': 'no-store' });
      assert.equal(noStore.headers.get('x-cache'), null);
      const noCache = await post(stack, body, { 'cache-control': 'no-cache' });
      assert.equal(noCache.headers.get('x-cache'), 'miss');
      const warm = await post(stack, chatRequest({ temperature: 0.7 }));
      assert.equal(warm.headers.get('x-cache'), null);
      const optIn = await post(stack, chatRequest({ temperature: 0.7 }), { 'x-colloquy-cache': 'on' });
      assert.equal(optIn.headers.get('x-cache'), 'miss');
    });

    it('caches every request of a key created with cache_responses, not only temperature 0', async () => {
      const created = await fetch(`${stack.url}/api/keys`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
        body: JSON.stringify({ name: 'cached', user_id: stack.userId, cache_responses: true }),
      });
      assert.equal(created.status, 201);
      const key = (await created.json()) as Json;
      assert.equal(key.cache_responses, true);
      const body = chatRequest({
        temperature: 0.9,
        messages: [{ role: 'user', content: `key opt-in ${dialect}` }],
      });
      assert.equal((await post(stack, body, {}, key.key)).headers.get('x-cache'), 'miss');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await post(stack, body, {}, key.key)).headers.get('x-cache'), 'hit');
      // The ordinary key of the same user does not opt in, and its cache is its own.
      assert.equal((await post(stack, body)).headers.get('x-cache'), null);
    });

    it('serves conversation replies from the cache when their assistant opts in, never regenerations', async () => {
      const api = (path: string, body?: unknown, key = stack.apiKey) =>
        fetch(`${stack.url}${path}`, {
          method: body ? 'POST' : 'GET',
          headers: { 'content-type': 'application/json', ...bearer(key) },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
      const assistant = (await (
        await api('/api/assistants', {
          name: `faq ${dialect}`,
          system_prompt: 'Answer briefly.',
          model: 'gpt-4o-mini',
          params: { temperature: 0.8, cache_responses: true },
        })
      ).json()) as Json;
      assert.ok(assistant.id, JSON.stringify(assistant));
      const ask = async () => {
        const conversation = (await (
          await api('/api/conversations', { assistant_id: assistant.id })
        ).json()) as Json;
        const res = await api(`/api/conversations/${conversation.id}/messages`, {
          content: `What are your opening hours? ${dialect}`,
          stream: false,
        });
        assert.ok(res.status < 300);
        return { conversation, result: (await res.json()) as Json };
      };
      const calls = upstreamCalls(stack);
      const first = await ask();
      assert.equal(upstreamCalls(stack), calls + 1);
      const forwarded = stack.fake.requests.at(-1)!.body;
      assert.equal(forwarded.cache_responses, undefined, 'the opt-in is not sent to the model');
      assert.equal(forwarded.temperature, 0.8);
      await new Promise((r) => setTimeout(r, 50));
      const second = await ask();
      assert.equal(upstreamCalls(stack), calls + 1, 'the second identical reply came from the cache');
      assert.equal(second.result.message.content, first.result.message.content);
      const row = await stack.usageRow(second.result.generation_id);
      assert.equal(row.cached, 1);
      const regenerate = await api(
        `/api/conversations/${second.conversation.id}/messages/${second.result.message.id}/regenerate`,
        { stream: false },
      );
      assert.ok(regenerate.status < 300, await regenerate.text());
      assert.equal(upstreamCalls(stack), calls + 2, 'a regeneration asks the model again');
    });

    it('never caches errors', async () => {
      const body = chatRequest({ messages: [{ role: 'user', content: `error ${dialect}` }] });
      stack.fake.queue({
        kind: 'status',
        status: 400,
        body: { error: { message: 'bad', type: 'invalid_request_error' } },
      });
      assert.equal((await post(stack, body)).status, 400);
      const again = await post(stack, body);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('x-cache'), 'miss');
    });
  });
}

describe('rate limits on /v1', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_PER_MINUTE: '3' } });
  });
  after(() => stack.close());

  it('sends X-RateLimit headers and refuses the request over the limit with 429 and Retry-After', async () => {
    const ok = await post(stack, chatRequest());
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-ratelimit-limit'), '3');
    assert.equal(ok.headers.get('x-ratelimit-remaining'), '2');
    await post(stack, chatRequest());
    await post(stack, chatRequest({ stream: true })).then((r) => r.text());
    const calls = upstreamCalls(stack);
    const refused = await post(stack, chatRequest());
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal(refused.headers.get('x-ratelimit-remaining'), '0');
    const body = (await refused.json()) as Json;
    assert.equal(body.error.code, 'rate_limited');
    assert.equal(body.error.type, 'rate_limit_error');
    assert.equal(upstreamCalls(stack), calls, 'refused before any provider call');
  });

  it('does not limit the master key', async () => {
    for (let i = 0; i < 5; i++)
      assert.equal((await post(stack, chatRequest(), {}, TEST_MASTER_KEY)).status, 200);
  });
});

describe('a tokens-per-minute limit on /v1', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({
      env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_TOKENS_PER_MINUTE: '1000' },
    });
  });
  after(() => stack.close());

  it('refuses a prompt too large for it before any provider call, estimating it without the tokenizer', async () => {
    const counted = tokenCounts().counted;
    const small = await post(stack, chatRequest({ max_tokens: 100 }));
    assert.equal(small.status, 200);
    const remaining = Number(small.headers.get('x-ratelimit-remaining-tokens'));
    assert.ok(
      remaining > 800 && remaining < 900,
      `remaining ${remaining}: ~100 output + a few prompt tokens`,
    );
    const calls = upstreamCalls(stack);
    const essay = 'The committee reviewed every proposal in detail before the vote. '.repeat(120);
    const large = await post(
      stack,
      chatRequest({ max_tokens: 10, messages: [{ role: 'user', content: essay }] }),
    );
    // It could never fit the limit: 413 with the reason, not a 429 to retry (issue 19, item 10).
    assert.equal(large.status, 413);
    assert.equal(large.headers.get('retry-after'), null);
    const error = ((await large.json()) as Json).error;
    assert.equal(error.code, 'exceeds_token_limit');
    assert.match(error.message, /too large/);
    assert.equal(upstreamCalls(stack), calls);
    assert.equal(tokenCounts().counted, counted, 'admission sent nothing to the tokenizer');
  });
});

describe('budgets on /v1', () => {
  let stack: ChatStack;
  before(async () => {
    stack = await startChatStack({ env: { RATE_LIMIT_ENABLED: 'true' } });
  });
  after(() => stack.close());

  it('refuses a request whose worst case would pass the budget, before calling the provider', async () => {
    // gpt-4o-mini: $0.60 per million output tokens; 4096 tokens of worst case is about $0.0025.
    await new BudgetStore(stack.t.database.db).set({
      scope: 'key',
      subjectId: stack.apiKeyId,
      period: 'day',
      limitUsd: 0.001,
      limitTokens: null,
    });
    const calls = upstreamCalls(stack);
    const refused = await post(stack, chatRequest());
    assert.equal(refused.status, 429);
    const body = (await refused.json()) as Json;
    assert.equal(body.error.code, 'budget_exceeded');
    assert.equal(body.error.type, 'insufficient_quota');
    assert.equal(upstreamCalls(stack), calls);
    // A small max_tokens fits the budget, and its actual cost is settled and shown by the budget API.
    const small = await post(stack, chatRequest({ max_tokens: 50 }));
    assert.equal(small.status, 200);
    await small.json();
    const status = await fetch(`${stack.url}/api/budgets/key/${stack.apiKeyId}`, {
      headers: bearer(TEST_MASTER_KEY),
    });
    const [day] = ((await status.json()) as Json).data;
    assert.equal(day.period, 'day');
    assert.ok(day.spent_usd > 0 && day.spent_usd < 0.001, `spent ${day.spent_usd}`);
  });

  it('shows spend in the usage API, a user only their own', async () => {
    const byModel = async () => {
      const usage = await fetch(`${stack.url}/api/usage?group_by=model`, { headers: bearer(stack.apiKey) });
      assert.equal(usage.status, 200);
      const body = (await usage.json()) as Json;
      return body.data.find((r: { key: string }) => r.key === 'gpt-4o-mini');
    };
    const before = await byModel();
    assert.ok(before.cost_usd > 0);
    // Read right after a request: the usage shown already counts it.
    await (await post(stack, chatRequest({ max_tokens: 10 }))).json();
    const model = await byModel();
    assert.equal(model.requests, before.requests + 1);
    assert.ok(model.cost_usd > before.cost_usd);
    const daily = (await (
      await fetch(`${stack.url}/api/usage?group_by=day`, { headers: bearer(stack.apiKey) })
    ).json()) as Json;
    const today = daily.data.at(-1);
    assert.ok(
      today.p50_latency_ms > 0 && today.p95_latency_ms >= today.p50_latency_ms,
      JSON.stringify(today),
    );
    const foreign = await fetch(`${stack.url}/api/usage?user_id=usr_someone_else`, {
      headers: bearer(stack.apiKey),
    });
    assert.equal(foreign.status, 403);
  });
});
