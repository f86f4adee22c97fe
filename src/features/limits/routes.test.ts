import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, bearer, TEST_MASTER_KEY } from '../../../test/helpers/app.js';
import { type ChatStack, startChatStack } from '../../../test/helpers/chat-stack.js';
import { DIALECTS } from '../../../test/helpers/databases.js';
import { newId } from '../../core/ids.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

const admin = bearer(TEST_MASTER_KEY);

/** The budgets and limits API as an admin and a client see it (issue 19, items 1, 18 and 20). */
for (const dialect of DIALECTS) {
  describe(`limits API (${dialect})`, () => {
    let s: ChatStack;
    before(async () => {
      s = await startChatStack({ dialect, routing: null, env: { RATE_LIMIT_ENABLED: 'true' } });
    });
    after(() => s.close());

    const chat = () =>
      fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
    const budgets = async (scope = 'key', id = s.apiKeyId) => {
      const res = await s.t.inject({ method: 'GET', url: `/api/budgets/${scope}/${id}`, headers: admin });
      assert.equal(res.statusCode, 200, res.body);
      return (res.json() as Json).data as Json[];
    };
    const putBudget = (payload: Json, scope = 'key', id = s.apiKeyId) =>
      s.t.inject({ method: 'PUT', url: `/api/budgets/${scope}/${id}`, headers: admin, payload });

    it('null means no limit on that dimension, and an omitted limit is null, not a 400', async () => {
      const put = await putBudget({ period: 'day', limit_usd: null, limit_tokens: 1_000_000 });
      assert.equal(put.statusCode, 204, put.body);
      const [day] = await budgets();
      assert.equal(day!.limit_usd, null, 'null was stored as 0 by type coercion');
      assert.equal(day!.limit_tokens, 1_000_000);
      const res = await chat();
      assert.equal(res.status, 200, await res.clone().text());
      await res.json();

      const tokensNull = await putBudget({ period: 'day', limit_usd: 5, limit_tokens: null });
      assert.equal(tokensNull.statusCode, 204, tokensNull.body);
      assert.equal((await budgets())[0]!.limit_tokens, null);

      const omitted = await putBudget({ period: 'month', limit_usd: 10 });
      assert.equal(omitted.statusCode, 204, omitted.body);
      const month = (await budgets()).find((b) => b.period === 'month')!;
      assert.equal(month.limit_usd, 10);
      assert.equal(month.limit_tokens, null);
      // A string is not a number: without coercion it is refused, not read as one.
      assertError(await putBudget({ period: 'day', limit_usd: '5' }), 400, 'validation_error');
      await s.t.inject({ method: 'DELETE', url: `/api/budgets/key/${s.apiKeyId}`, headers: admin });
    });

    it('answers in snake_case, like every other /api route and the request body', async () => {
      await putBudget({ period: 'day', limit_usd: 1, limit_tokens: 100_000 });
      const [day] = await budgets();
      assert.deepEqual(Object.keys(day!).sort(), [
        'limit_tokens',
        'limit_usd',
        'period',
        'reserved_tokens',
        'reserved_usd',
        'scope',
        'spent_tokens',
        'spent_usd',
        'subject_id',
        'window',
      ]);
      assert.equal(day!.subject_id, s.apiKeyId);
      assert.match(day!.window.end, /T00:00:00\.000Z$/);
      await s.t.inject({ method: 'DELETE', url: `/api/budgets/key/${s.apiKeyId}`, headers: admin });
    });

    it('a budget or override for a key or user that does not exist is a 404', async () => {
      const missing = newId('key');
      const override = await s.t.inject({
        method: 'PUT',
        url: `/api/limits/key/${missing}`,
        headers: admin,
        payload: { limit: 'requests_per_minute', value: 5 },
      });
      assertError(override, 404, 'not_found', 'subject_id');
      assertError(await putBudget({ period: 'day', limit_usd: 1 }, 'key', missing), 404, 'not_found');
      assertError(await putBudget({ period: 'day', limit_usd: 1 }, 'user', newId('usr')), 404, 'not_found');
      const get = await s.t.inject({
        method: 'GET',
        url: `/api/limits/user/${newId('usr')}`,
        headers: admin,
      });
      assertError(get, 404, 'not_found');
    });

    it('lists and removes a key’s or user’s limit overrides', async () => {
      const list = async () => {
        const res = await s.t.inject({ method: 'GET', url: `/api/limits/user/${s.userId}`, headers: admin });
        assert.equal(res.statusCode, 200, res.body);
        return (res.json() as Json).data;
      };
      assert.deepEqual(await list(), []);
      for (const [limit, value] of [
        ['tokens_per_minute', 50_000],
        ['requests_per_minute', -1],
      ] as const) {
        const put = await s.t.inject({
          method: 'PUT',
          url: `/api/limits/user/${s.userId}`,
          headers: admin,
          payload: { limit, value },
        });
        assert.equal(put.statusCode, 204, put.body);
      }
      assert.deepEqual(await list(), [
        { limit: 'requests_per_minute', value: -1 },
        { limit: 'tokens_per_minute', value: 50_000 },
      ]);
      const removed = await s.t.inject({
        method: 'DELETE',
        url: `/api/limits/user/${s.userId}?limit=tokens_per_minute`,
        headers: admin,
      });
      assert.deepEqual(removed.json(), { removed: 1 });
      assert.deepEqual(await list(), [{ limit: 'requests_per_minute', value: -1 }]);
      const plain = await s.t.inject({
        method: 'GET',
        url: `/api/limits/key/${s.apiKeyId}`,
        headers: bearer(s.apiKey),
      });
      assertError(plain, 403, 'forbidden');
      await s.t.inject({ method: 'DELETE', url: `/api/limits/user/${s.userId}`, headers: admin });
    });
  });
}

describe('tokens per minute over HTTP', () => {
  let s: ChatStack;
  before(async () => {
    s = await startChatStack({
      routing: null,
      env: { RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_TOKENS_PER_MINUTE: '2000' },
    });
  });
  after(() => s.close());
  const chat = (extra: Json = {}) =>
    fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });

  it('"hi" without max_tokens is served under a 2,000-token limit, again and again', async () => {
    // Issue 19, item 10: 4,096 reserved output tokens made it a 429 with Retry-After 60, forever.
    for (let i = 0; i < 3; i++) {
      const res = await chat();
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get('x-ratelimit-limit-tokens'), '2000');
      await res.json();
    }
  });

  it('a max_tokens that can never fit is a 413 naming the limit, not a 429 to retry', async () => {
    const res = await chat({ max_tokens: 4096 });
    assert.equal(res.status, 413);
    assert.equal(res.headers.get('retry-after'), null);
    const body = (await res.json()) as Json;
    assert.equal(body.error.code, 'exceeds_token_limit');
    assert.equal(body.error.param, 'max_tokens');
    assert.match(body.error.message, /2000 tokens per minute/);
  });
});
