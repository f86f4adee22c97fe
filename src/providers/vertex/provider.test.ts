import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { type CryptoKey, exportPKCS8, generateKeyPair } from 'jose';
import { type FakeVertex, startFakeVertex } from '../../../test/fake-upstream/clouds/vertex.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../types.js';
import { VertexProvider } from './provider.js';

/**
 * Vertex AI against a fake written from Google's references (see the fake's header):
 * https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference and
 * https://developers.google.com/identity/protocols/oauth2/service-account#httprest (the fake verifies the JWT
 * assertion's RS256 signature with the service account's public key, and its iss / scope / aud / exp claims).
 */

const PROJECT = 'colloquy-test';
const LOCATION = 'europe-west4';
const EMAIL = 'colloquy@colloquy-test.iam.gserviceaccount.com';

const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_vertex',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});
const ask = (
  model: string,
  content: string,
  extra: Partial<ChatCompletionRequest> = {},
): ChatCompletionRequest => ({
  model,
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

describe('Vertex AI provider', () => {
  let dir: string;
  let keyFile: string;
  let publicKey: CryptoKey;
  let privatePem: string;
  let fake: FakeVertex;
  let clock: number;
  const now = () => clock;

  before(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    publicKey = pair.publicKey;
    privatePem = await exportPKCS8(pair.privateKey);
    dir = await mkdtemp(join(tmpdir(), 'colloquy-vertex-'));
    keyFile = join(dir, 'sa.json');
  });
  after(() => rm(dir, { recursive: true, force: true }));
  afterEach(() => fake?.close());

  async function start(lifetimeSeconds = 3600) {
    clock = Date.now();
    fake = await startFakeVertex({
      project: PROJECT,
      location: LOCATION,
      clientEmail: EMAIL,
      publicKey,
      lifetimeSeconds,
      now,
    });
    await writeFile(
      keyFile,
      JSON.stringify({
        type: 'service_account',
        project_id: PROJECT,
        private_key_id: 'key-1',
        private_key: privatePem,
        client_email: EMAIL,
        token_uri: `${fake.url}/token`,
      }),
    );
    return new VertexProvider({
      project: PROJECT,
      location: LOCATION,
      baseUrl: fake.url,
      credentialsFile: keyFile,
      now,
    });
  }

  it('a service-account JWT is exchanged for a token; Gemini models at the publishers/google path with it', async () => {
    const vertex = await start();
    const completion = await vertex.complete(ask('gemini-2.5-pro', 'Hi'), options());
    assert.equal(fake.tokensIssued, 1);
    assert.equal(fake.claims?.iss, EMAIL);
    assert.equal(fake.claims?.aud, `${fake.url}/token`);
    const sent = fake.requests.at(-1)!;
    assert.equal(
      sent.path,
      `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/gemini-2.5-pro:generateContent`,
    );
    assert.equal(sent.headers.authorization, 'Bearer ya29.fake-vertex-token-1');
    assert.equal(completion.choices[0]?.message.content, 'Hello from Gemini gemini-2.5-pro.');
    assert.deepEqual(completion.usage, { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 });
  });

  it('streams with ?alt=sse; tool calls and thought signatures round-trip as on the Gemini API', async () => {
    const vertex = await start();
    const weather = {
      type: 'function' as const,
      function: { name: 'get_weather', parameters: { type: 'object' } },
    };
    const chunks = await collect(
      await vertex.stream(ask('gemini-2.5-flash', 'Weather?', { tools: [weather] }), options()),
    );
    assert.equal(fake.requests.at(-1)!.query.get('alt'), 'sse');
    const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    assert.equal(deltas.length, 2);
    const assistant: ChatMessage = {
      role: 'assistant',
      content: null,
      tool_calls: deltas.map((d) => ({
        id: d.id!,
        type: 'function' as const,
        function: { name: d.function!.name!, arguments: d.function!.arguments! },
        ...((d as { extra_content?: unknown }).extra_content
          ? { extra_content: (d as { extra_content?: unknown }).extra_content }
          : {}),
      })),
    };
    const second = await vertex.complete(
      ask('gemini-2.5-flash', '', {
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather?' },
          assistant,
          { role: 'tool', tool_call_id: deltas[0]!.id!, content: '18' },
          { role: 'tool', tool_call_id: deltas[1]!.id!, content: '12' },
        ],
      }),
      options(),
    );
    const model = (fake.requests.at(-1)!.body.contents as { parts: { thoughtSignature?: string }[] }[])[1]!;
    assert.equal(model.parts[0]?.thoughtSignature, fake.signatures[0]);
    assert.match(second.choices[0]?.message.content ?? '', /Paris and London/);
    assert.equal(fake.tokensIssued, 1, 'one token served both calls');
  });

  it('a token near expiry is renewed before the call: no request is ever refused', async () => {
    const vertex = await start(3600);
    await vertex.complete(ask('gemini-2.5-flash', 'Hi'), options());
    clock += 3_400_000; // 56 minutes: inside the renewal margin, not expired
    await vertex.complete(ask('gemini-2.5-flash', 'Hi'), options());
    assert.equal(fake.tokensIssued, 2);
    clock += 3_700_000; // past the second token's expiry
    await vertex.complete(ask('gemini-2.5-flash', 'Hi'), options());
    assert.equal(fake.tokensIssued, 3);
    assert.deepEqual(fake.refused, []);
  });

  it('concurrent calls share one token exchange', async () => {
    const vertex = await start();
    await Promise.all(
      Array.from({ length: 5 }, () => vertex.complete(ask('gemini-2.5-flash', 'Hi'), options())),
    );
    assert.equal(fake.tokensIssued, 1);
  });

  it('a key the token endpoint does not trust is 502 upstream_auth_failed, the private key not echoed', async () => {
    await start();
    const other = await generateKeyPair('RS256', { extractable: true });
    const otherPem = await exportPKCS8(other.privateKey);
    const badFile = join(dir, 'other.json');
    await writeFile(
      badFile,
      JSON.stringify({
        type: 'service_account',
        private_key: otherPem,
        client_email: EMAIL,
        token_uri: `${fake.url}/token`,
      }),
    );
    const vertex = new VertexProvider({
      project: PROJECT,
      location: LOCATION,
      baseUrl: fake.url,
      credentialsFile: badFile,
      now,
    });
    const err = await rejection(vertex.complete(ask('gemini-2.5-flash', 'Hi'), options()));
    assert.equal(err.details.status, 502);
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.match(err.message, /invalid_grant/);
    assert.doesNotMatch(err.message, /PRIVATE KEY/);
    assert.equal(fake.tokensIssued, 0);
    const missing = new VertexProvider({
      project: PROJECT,
      location: LOCATION,
      baseUrl: fake.url,
      credentialsFile: join(dir, 'none.json'),
      now,
    });
    assert.match(
      (await rejection(missing.complete(ask('gemini-2.5-flash', 'Hi'), options()))).message,
      /GOOGLE_APPLICATION_CREDENTIALS/,
    );
  });

  it('workload identity: the metadata server token (Metadata-Flavor: Google) when no key file is set', async () => {
    await start();
    const vertex = new VertexProvider({
      project: PROJECT,
      location: LOCATION,
      baseUrl: fake.url,
      metadataHost: new URL(fake.url).host,
      now,
    });
    const completion = await vertex.complete(ask('gemini-2.5-flash', 'Hi'), options());
    assert.match(completion.choices[0]?.message.content ?? '', /Hello/);
    const tokenRequest = fake.requests.find((r) => r.path.startsWith('/computeMetadata/'))!;
    assert.equal(tokenRequest.headers['metadata-flavor'], 'Google');
    await vertex.checkAccess(AbortSignal.timeout(5_000));
  });

  it('Claude on Vertex: rawPredict / streamRawPredict at publishers/anthropic with anthropic_version and no model', async () => {
    const vertex = await start();
    const completion = await vertex.complete(
      ask('claude-sonnet-4@20250514', 'Hi', { max_tokens: 50 }),
      options(),
    );
    let sent = fake.requests.at(-1)!;
    assert.equal(
      sent.path,
      `/v1/projects/${PROJECT}/locations/${LOCATION}/publishers/anthropic/models/claude-sonnet-4%4020250514:rawPredict`,
    );
    assert.equal(sent.body.anthropic_version, 'vertex-2023-10-16');
    assert.equal('model' in sent.body, false);
    assert.equal(completion.choices[0]?.message.content, 'Hello from claude-sonnet-4@20250514 on Vertex.');
    assert.deepEqual(completion.usage, { prompt_tokens: 9, completion_tokens: 6, total_tokens: 15 });
    const chunks = await collect(
      await vertex.stream(ask('claude-sonnet-4@20250514', 'Hi', { max_tokens: 50 }), options()),
    );
    sent = fake.requests.at(-1)!;
    assert.match(sent.path, /:streamRawPredict$/);
    assert.equal(
      chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''),
      'Hello from claude-sonnet-4@20250514 on Vertex.',
    );
    assert.equal(chunks.at(-1)?.usage?.completion_tokens, 6);
  });

  it('quota (429 RESOURCE_EXHAUSTED) is retryable with its RetryInfo delay; embeddings through :predict', async () => {
    const vertex = await start();
    fake.faults.push({ kind: 'throttle', retryDelay: '2.5s' });
    const err = await rejection(vertex.complete(ask('gemini-2.5-flash', 'Hi'), options()));
    assert.equal(err.details.status, 429);
    assert.equal(err.details.retryAfterMs, 2_500);
    assert.equal(err.retryable, true);
    const embedded = await vertex.embed(
      { model: 'text-embedding-005', input: ['a', 'bb'], dimensions: 4 },
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.match(sent.path, /publishers\/google\/models\/text-embedding-005:predict$/);
    assert.deepEqual(sent.body, {
      instances: [{ content: 'a' }, { content: 'bb' }],
      parameters: { outputDimensionality: 4 },
    });
    assert.equal(embedded.data.length, 2);
    assert.equal(embedded.usage.prompt_tokens, 4);
  });
});
