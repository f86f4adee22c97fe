import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { type FakeAzure, startFakeAzure } from '../../../test/fake-upstream/clouds/azure.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest } from '../types.js';
import { AzureOpenAiProvider } from './provider.js';

/** Azure OpenAI against a fake resource written from Microsoft's references (see the fake's header). */

const KEY = 'azure-resource-key-0123456789abcdef';
const ENTRA = {
  tenantId: 'contoso-tenant',
  clientId: 'colloquy-app',
  clientSecret: 'entra-client-secret-0123456789',
};

const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_azure',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});

const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } } },
  },
};

const ask = (content: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: 'gpt-4o-prod',
  messages: [{ role: 'user', content }],
  ...extra,
});

async function collect(events: AsyncIterable<{ chunk: ChatCompletionChunk }>) {
  const chunks: ChatCompletionChunk[] = [];
  for await (const { chunk } of events) chunks.push(chunk);
  return chunks;
}

async function rejection(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${err}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

describe('Azure OpenAI provider', () => {
  let fake: FakeAzure;
  afterEach(() => fake?.close());

  it('a dated api-version calls the deployment path with ?api-version and the api-key header', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({
      endpoint: `${fake.url}/`,
      apiVersion: '2024-10-21',
      apiKey: KEY,
    });
    const completion = await azure.complete(ask('Hi'), options());
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/openai/deployments/gpt-4o-prod/chat/completions');
    assert.equal(sent.query.get('api-version'), '2024-10-21');
    assert.equal(sent.headers['api-key'], KEY);
    assert.equal(sent.headers.authorization, undefined);
    assert.equal(sent.body.stream, false);
    assert.equal(completion.choices[0]?.message.content, 'Hello from Azure deployment gpt-4o-prod.');
    assert.deepEqual(completion.usage, { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 });
    // Azure's own fields are relayed to the client.
    assert.ok(Array.isArray(completion.prompt_filter_results));
  });

  it('the v1 API (the default) calls /openai/v1/chat/completions with the deployment as model', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: `${fake.url}/openai/v1`, apiKey: KEY });
    const completion = await azure.complete(ask('Hi'), options());
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/openai/v1/chat/completions');
    assert.equal(sent.query.get('api-version'), null);
    assert.equal(sent.body.model, 'gpt-4o-prod');
    assert.match(completion.choices[0]?.message.content ?? '', /gpt-4o-prod/);
  });

  it('an api-version the resource does not know is the 404 Azure sends, not retried', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiVersion: '2023-01-01', apiKey: KEY });
    const err = await rejection(azure.complete(ask('Hi'), options()));
    assert.equal(err.details.status, 404);
    assert.equal(err.retryable, false);
  });

  it('streams: the prompt-filter chunk, tool-call arguments split across chunks reassembled, usage', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiVersion: '2024-10-21', apiKey: KEY });
    const chunks = await collect(
      await azure.stream(ask('Weather in Paris?', { tools: [weather] }), options()),
    );
    assert.equal(fake.requests.at(-1)!.headers.accept, 'text/event-stream');
    assert.deepEqual((fake.requests.at(-1)!.body.stream_options as object) ?? {}, { include_usage: true });
    assert.deepEqual(chunks[0]?.choices, []);
    assert.ok(chunks[0]?.prompt_filter_results);
    const calls = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.ok(calls.length >= 3, 'the arguments came in several chunks');
    assert.equal(calls[0]?.id, 'call_az1');
    assert.equal(calls[0]?.function?.name, 'get_weather');
    assert.deepEqual(JSON.parse(calls.map((c) => c.function?.arguments ?? '').join('')), {
      location: 'Paris',
      unit: 'celsius',
    });
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)?.usage, { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 });
  });

  it('a prompt refused by the content filter is 400 content_filtered naming the category, never retried', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    fake.faults.push({ kind: 'prompt_filtered' });
    const err = await rejection(azure.complete(ask('something violent'), options()));
    assert.equal(err.details.status, 400);
    assert.equal(err.details.code, 'content_filtered');
    assert.equal(err.details.type, 'invalid_request_error');
    assert.equal(err.retryable, false);
    assert.match(err.message, /violence: high/);
    fake.faults.push({ kind: 'prompt_filtered' });
    const streamed = await rejection(azure.stream(ask('something violent'), options()));
    assert.equal(streamed.details.code, 'content_filtered');
  });

  it('a content-filter error event inside a stream is content_filtered too, not a 502', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    fake.faults.push({ kind: 'stream_filtered' });
    const err = await rejection(collect(await azure.stream(ask('Hi'), options())));
    assert.equal(err.details.code, 'content_filtered');
    assert.equal(err.details.status, 400);
    assert.match(err.message, /hate: medium/);
  });

  it('a filtered completion keeps finish_reason content_filter and the filter results', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    const completion = await azure.complete(ask('please filter my answer'), options());
    assert.equal(completion.choices[0]?.finish_reason, 'content_filter');
    assert.equal(
      (completion.choices[0] as { content_filter_results?: { violence?: { filtered: boolean } } })
        .content_filter_results?.violence?.filtered,
      true,
    );
    const chunks = await collect(await azure.stream(ask('please filter my answer'), options()));
    assert.ok(chunks.some((c) => c.choices[0]?.finish_reason === 'content_filter'));
  });

  it('throttling: retryable 429 with the wait from retry-after-ms (finer than retry-after)', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    fake.faults.push({ kind: 'throttle', retryAfterMs: 1_500 });
    const err = await rejection(azure.complete(ask('Hi'), options()));
    assert.equal(err.details.status, 429);
    assert.equal(err.retryable, true);
    assert.equal(err.details.retryAfterMs, 1_500);
    assert.equal(err.details.code, 'upstream_rate_limited', 'not Azure\'s bare "429"');
  });

  it('a wrong key is a 502 upstream_auth_failed; a 5xx is retryable', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const wrong = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: 'not-the-key-0123456789' });
    const auth = await rejection(wrong.complete(ask('Hi'), options()));
    assert.equal(auth.details.status, 502);
    assert.equal(auth.details.code, 'upstream_auth_failed');
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    fake.faults.push({ kind: 'server_error' });
    const server = await rejection(azure.complete(ask('Hi'), options()));
    assert.equal(server.details.status, 502);
    assert.equal(server.retryable, true);
  });

  it('an upstream error that echoes the key does not carry it into the error', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiKey: KEY });
    fake.faults.push({ kind: 'echo_key' });
    const err = await rejection(azure.complete(ask('Hi'), options()));
    assert.match(fake.requests.at(-1)!.headers['api-key'] as string, /azure-resource-key/);
    assert.doesNotMatch(err.message, /azure-resource-key/);
    assert.match(err.message, /\[REDACTED\]/);
  });

  it('embeddings: the deployment path, input and encoding_format forwarded, base64 relayed', async () => {
    fake = await startFakeAzure({ apiKey: KEY });
    const azure = new AzureOpenAiProvider({ endpoint: fake.url, apiVersion: '2024-10-21', apiKey: KEY });
    const floats = await azure.embed({ model: 'embed-small', input: ['a', 'b'] }, options());
    assert.equal(fake.requests.at(-1)!.path, '/openai/deployments/embed-small/embeddings');
    assert.equal(floats.data.length, 2);
    assert.deepEqual(floats.data[1]?.embedding, [0.25, -0.5, 0.125]);
    assert.deepEqual(floats.usage, { prompt_tokens: 8, total_tokens: 8 });
    const b64 = await azure.embed(
      { model: 'embed-small', input: 'a', encoding_format: 'base64', dimensions: 3 },
      options(),
    );
    assert.equal(fake.requests.at(-1)!.body.dimensions, 3);
    const bytes = Buffer.from(b64.data[0]?.embedding as string, 'base64');
    assert.deepEqual([...new Float32Array(bytes.buffer, bytes.byteOffset, 3)], [0.25, -0.5, 0.125]);
  });
});

describe('Azure OpenAI with Microsoft Entra ID', () => {
  let fake: FakeAzure;
  afterEach(() => fake?.close());

  it('exchanges client credentials once, sends the bearer token, and renews it before expiry with no refused call', async () => {
    let clock = 1_000_000;
    const now = () => clock;
    fake = await startFakeAzure({ entra: { ...ENTRA, lifetimeSeconds: 3600 }, now });
    const azure = new AzureOpenAiProvider({
      endpoint: fake.url,
      entra: { ...ENTRA, authorityHost: fake.url },
      now,
    });
    await azure.complete(ask('one'), options());
    await azure.complete(ask('two'), options());
    assert.equal(fake.tokensIssued, 1, 'the token is cached');
    const first = fake.requests.at(-1)!.headers.authorization;
    assert.match(String(first), /^Bearer eyJ/);
    // 56 minutes later: inside the renewal margin, still before expiry.
    clock += 56 * 60_000;
    await azure.complete(ask('three'), options());
    assert.equal(fake.tokensIssued, 2, 'renewed ahead of expiry');
    assert.notEqual(fake.requests.at(-1)!.headers.authorization, first);
    // Past the first token's expiry: the renewed one still works.
    clock += 10 * 60_000;
    const chunks = await collect(await azure.stream(ask('four'), options()));
    assert.ok(chunks.length > 0);
    assert.equal(fake.refused.length, 0, 'no call was made with an expired token');
  });

  it('concurrent calls share one token request', async () => {
    fake = await startFakeAzure({ entra: { ...ENTRA, lifetimeSeconds: 3600 } });
    const azure = new AzureOpenAiProvider({
      endpoint: fake.url,
      entra: { ...ENTRA, authorityHost: fake.url },
    });
    await Promise.all(Array.from({ length: 5 }, () => azure.complete(ask('hi'), options())));
    assert.equal(fake.tokensIssued, 1);
  });

  it('a failed renewal keeps using the still-valid token; an expired one fails as upstream_auth_failed', async () => {
    let clock = 0;
    const now = () => clock;
    fake = await startFakeAzure({ entra: { ...ENTRA, lifetimeSeconds: 3600 }, now });
    const azure = new AzureOpenAiProvider({
      endpoint: fake.url,
      entra: { ...ENTRA, authorityHost: fake.url },
      now,
    });
    await azure.complete(ask('one'), options());
    fake.tokenEndpointDown = true;
    clock += 57 * 60_000;
    await azure.complete(ask('two'), options());
    assert.equal(fake.refused.length, 0);
    clock += 10 * 60_000;
    const err = await rejection(azure.complete(ask('three'), options()));
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.equal(err.retryable, true, "the token endpoint's 5xx may pass");
  });

  it('a refused client secret is a clear error without the secret in it', async () => {
    fake = await startFakeAzure({ entra: { ...ENTRA, lifetimeSeconds: 3600 } });
    const azure = new AzureOpenAiProvider({
      endpoint: fake.url,
      entra: { ...ENTRA, clientSecret: 'wrong-secret-0123456789', authorityHost: fake.url },
    });
    const err = await rejection(azure.complete(ask('one'), options()));
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.equal(err.retryable, false);
    assert.match(err.message, /invalid_client: AADSTS7000215/);
    assert.doesNotMatch(err.message, /wrong-secret/);
  });
});
