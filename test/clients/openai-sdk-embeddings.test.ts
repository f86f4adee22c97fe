import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { BudgetStore } from '../../src/features/limits/budget-store.js';
import { fakeEmbeddings } from '../fake-upstream/server.js';
import { bearer } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';

/**
 * POST /v1/embeddings (issue 20) with the real `openai` SDK, Colloquy in front of fake OpenAI-format
 * upstreams whose embeddings answers follow https://platform.openai.com/docs/api-reference/embeddings/create
 * (test/fake-upstream/server.ts, fakeEmbeddings).
 */

const routing = (backupUrl: string) => {
  const base = defaultRouting(backupUrl);
  return {
    ...base,
    providers: [
      ...(base.providers ?? []),
      // Anthropic has no embeddings API: a model served only there is refused before any call.
      { name: 'claude', type: 'anthropic' as const, base_url: 'http://127.0.0.1:9' },
    ],
    models: [
      ...(base.models ?? []),
      { name: 'claude-model', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
      {
        name: 'mixed-embed',
        deployments: [
          { provider: 'claude', model: 'claude-sonnet-4-5' },
          { provider: 'backup', model: 'text-embedding-3-small', priority: 1 },
        ],
      },
    ],
  };
};

/** The vector the fake upstream gives a text, as floats (what the SDK hands its user). */
function upstreamVector(input: unknown, dimensions?: number) {
  return fakeEmbeddings({ model: 'x', input, ...(dimensions && { dimensions }) }).data[0]!
    .embedding as number[];
}

describe('the openai SDK: embeddings', () => {
  let s: ChatStack;
  let client: OpenAI;
  const upstreamEmbeddingCalls = () => s.fake.requests.filter((r) => r.path === '/v1/embeddings');

  before(async () => {
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '2' },
      routing,
      fakeOptions: { models: ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small'] },
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
  });

  it('SDK defaults (base64 on the wire): the SDK decodes the vectors; the ledger has an embeddings row', async () => {
    const { data: result, response } = await client.embeddings
      .create({ model: 'text-embedding-3-small', input: 'The food was delicious' })
      .withResponse();
    const upstream = upstreamEmbeddingCalls().at(-1)!;
    assert.equal(upstream.body.encoding_format, 'base64', 'the SDK asks for base64 and Colloquy forwards it');
    assert.equal(upstream.body.model, 'text-embedding-3-small');
    assert.equal(result.data.length, 1);
    assert.deepEqual(result.data[0]!.embedding, upstreamVector('The food was delicious'));
    assert.equal(result.usage.prompt_tokens, 4);
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.protocol, 'embeddings');
    assert.equal(row.status, 'ok');
    assert.equal(Number(row.prompt_tokens), 4);
    assert.equal(Number(row.completion_tokens), 0);
    assert.equal(row.api_key_id, s.apiKeyId);
  });

  it('float, a list of texts, dimensions: one vector per input, in order, dimensions long', async () => {
    const result = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['first text', 'second text', 'third'],
      encoding_format: 'float',
      dimensions: 4,
    });
    assert.equal(upstreamEmbeddingCalls().at(-1)!.body.dimensions, 4);
    assert.deepEqual(
      result.data.map((d) => d.index),
      [0, 1, 2],
    );
    assert.deepEqual(result.data[1]!.embedding, upstreamVector('second text', 4));
    assert.ok(result.data.every((d) => Array.isArray(d.embedding) && d.embedding.length === 4));
  });

  it('token ids and lists of token ids are accepted', async () => {
    const one = await client.embeddings.create({ model: 'text-embedding-3-small', input: [1, 2, 3] });
    assert.equal(one.data.length, 1);
    assert.equal(one.usage.prompt_tokens, 3);
    const two = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: [
        [1, 2],
        [3, 4, 5],
      ],
    });
    assert.equal(two.data.length, 2);
    assert.deepEqual(upstreamEmbeddingCalls().at(-1)!.body.input, [
      [1, 2],
      [3, 4, 5],
    ]);
  });

  it('routed: an alias falls back to its next deployment when the first fails (before any byte)', async () => {
    s.fake.queue({ kind: 'status', status: 503 });
    const backupCalls = s.backup.requests.length;
    const { data: result, response } = await client.embeddings
      .create({ model: 'ha-model', input: 'fallback please' })
      .withResponse();
    assert.equal(result.data.length, 1);
    assert.equal(response.headers.get('x-colloquy-deployment'), 'backup/gpt-4o-mini');
    assert.equal(s.backup.requests.length, backupCalls + 1);
  });

  it('a route mixing chat-only and embeddings deployments embeds on the ones that can', async () => {
    const { response } = await client.embeddings
      .create({ model: 'mixed-embed', input: 'skip the chat-only one' })
      .withResponse();
    assert.equal(response.headers.get('x-colloquy-deployment'), 'backup/text-embedding-3-small');
  });

  it('a model whose provider has no embeddings API: 400 model_not_supported, no upstream call', async () => {
    await assert.rejects(client.embeddings.create({ model: 'claude-model', input: 'hi' }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, String(err));
      assert.equal(err.code, 'model_not_supported');
      assert.equal(err.param, 'model');
      assert.match(err.message, /embeddings API/);
      return true;
    });
  });

  it('models.list tells which endpoints serve each model, and stays a valid OpenAI list', async () => {
    const endpoints = new Map<string, unknown>();
    for await (const model of client.models.list()) {
      assert.equal(model.object, 'model');
      endpoints.set(model.id, (model as unknown as { endpoints: unknown }).endpoints);
    }
    // `openai` providers: legacy completions pass through to them too.
    const chat = ['chat.completions', 'messages', 'responses', 'completions'];
    assert.deepEqual(endpoints.get('gpt-4o-mini'), chat);
    assert.deepEqual(endpoints.get('ha-model'), chat);
    assert.deepEqual(endpoints.get('text-embedding-3-small'), ['embeddings']);
    const one = await client.models.retrieve('text-embedding-3-small');
    assert.deepEqual((one as unknown as { endpoints: unknown }).endpoints, ['embeddings']);
  });

  it('bad input is a 400 with a code, never a 5xx', async () => {
    for (const input of ['', [], [''], [[]], [-1], { text: 'x' }]) {
      const res = await fetch(`${s.url}/v1/embeddings`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'text-embedding-3-small', input }),
      });
      assert.equal(res.status, 400, JSON.stringify(input));
      const body = (await res.json()) as { error: { code: string } };
      assert.ok(body.error.code, JSON.stringify(body));
    }
    await assert.rejects(
      client.embeddings.create({
        model: 'text-embedding-3-small',
        input: 'x',
        encoding_format: 'hex' as 'float',
      }),
      OpenAI.BadRequestError,
    );
    await assert.rejects(
      client.embeddings.create({ model: 'text-embedding-3-small', input: 'x', dimensions: 0 }),
      OpenAI.BadRequestError,
    );
  });
});

describe('embeddings: the response cache', () => {
  let s: ChatStack;
  before(async () => {
    s = await startChatStack({ env: { RESPONSE_CACHE_TTL_SECONDS: '3600', RATE_LIMIT_ENABLED: 'true' } });
  });
  after(async () => {
    await s?.close();
  });
  const calls = () => s.fake.requests.filter((r) => r.path === '/v1/embeddings').length;

  it('the exact same input is answered from the cache (per encoding); no-store skips it', async () => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
    const params = { model: 'text-embedding-3-small', input: ['cache me', 'and me'] };
    const first = await client.embeddings.create(params).withResponse();
    assert.equal(first.response.headers.get('x-cache'), 'miss');
    const before = calls();
    const again = await client.embeddings.create(params).withResponse();
    assert.equal(again.response.headers.get('x-cache'), 'hit');
    assert.equal(calls(), before);
    assert.deepEqual(again.data.data, first.data.data);
    const row = await s.usageRow(again.response.headers.get('x-request-id')!);
    assert.equal(row.cached ? 1 : 0, 1);
    assert.equal(row.protocol, 'embeddings');

    const other = await client.embeddings
      .create({ ...params, input: ['cache me', 'and me!'] })
      .withResponse();
    assert.equal(other.response.headers.get('x-cache'), 'miss');
    await client.embeddings.create(params, { headers: { 'cache-control': 'no-store' } });
    assert.equal(calls(), before + 2);
  });
});

describe('embeddings: budgets', () => {
  let s: ChatStack;
  before(async () => {
    s = await startChatStack({ env: { RATE_LIMIT_ENABLED: 'true' } });
  });
  after(async () => {
    await s?.close();
  });
  const calls = () => s.fake.requests.filter((r) => r.path === '/v1/embeddings').length;

  it('a token budget: reserved on the input before the call (refused without calling), settled after', async () => {
    await new BudgetStore(s.t.database.db).set({
      scope: 'key',
      subjectId: s.apiKeyId,
      period: 'day',
      limitUsd: null,
      limitTokens: 50,
    });
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
    const before = calls();
    await assert.rejects(
      client.embeddings.create({ model: 'text-embedding-3-small', input: 'word '.repeat(400) }),
      (err) => {
        assert.ok(err instanceof OpenAI.RateLimitError, String(err));
        assert.equal(err.code, 'budget_exceeded');
        return true;
      },
    );
    assert.equal(calls(), before);
    const served = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'a short one',
      encoding_format: 'float',
    });
    assert.equal(calls(), before + 1);
    // Settled to the input tokens the upstream counted (the reservation was the estimate).
    const status = await fetch(`${s.url}/api/budgets/key/${s.apiKeyId}`, { headers: bearer(s.apiKey) });
    const [day] = ((await status.json()) as { data: { spent_tokens: number }[] }).data;
    assert.equal(day!.spent_tokens, served.usage.prompt_tokens);
  });
});
