import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { verifySigV4 } from '../../../test/fake-upstream/clouds/aws-wire.js';
import { type FakeBedrock, startFakeBedrock } from '../../../test/fake-upstream/clouds/bedrock.js';
import { CallController } from '../../core/call-signal.js';
import { ProviderError } from '../errors.js';
import type { CallOptions, ChatCompletionChunk, ChatCompletionRequest } from '../types.js';
import { AwsCredentials, REFRESH_BEFORE_MS } from './auth.js';
import { BedrockProvider } from './provider.js';

/** Bedrock against a fake Bedrock Runtime written from AWS's references (see the fake's header). */

const REGION = 'us-east-1';
const KEY = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
};
const NOVA = 'amazon.nova-lite-v1:0';
const PROFILE_ARN =
  'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0';

const options = (): CallOptions => ({
  signal: new CallController().signal,
  requestId: 'req_bedrock',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});

const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Current weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } } },
  },
};

const ask = (content: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: NOVA,
  messages: [{ role: 'user', content }],
  ...extra,
});

const staticKeys = (key: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) =>
  new AwsCredentials(async () => key);

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

describe('Bedrock provider (Converse, SigV4)', () => {
  let fake: FakeBedrock;
  afterEach(() => fake?.close());

  const start = async () => {
    fake = await startFakeBedrock({ region: REGION, keys: [KEY], apiKey: 'ABSKbedrock-api-key-0123456789' });
    return new BedrockProvider({ region: REGION, baseUrl: fake.url, credentials: staticKeys(KEY) });
  };

  it('chat: a signed Converse call with system prompt and inferenceConfig, answer and usage mapped', async () => {
    const bedrock = await start();
    const completion = await bedrock.complete(
      {
        model: NOVA,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
        ],
        temperature: 0.5,
        top_p: 0.9,
        max_tokens: 100,
      },
      options(),
    );
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.path, '/model/amazon.nova-lite-v1%3A0/converse');
    assert.deepEqual(sent.body.system, [{ text: 'Be brief.' }]);
    assert.deepEqual(sent.body.inferenceConfig, { maxTokens: 100, temperature: 0.5, topP: 0.9 });
    assert.deepEqual(sent.body.messages, [{ role: 'user', content: [{ text: 'Hi' }] }]);
    assert.equal(completion.choices[0]?.message.content, `Hello from ${NOVA}. System: Be brief.`);
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.deepEqual(completion.usage, { prompt_tokens: 21, completion_tokens: 9, total_tokens: 30 });
    assert.equal(fake.refused.length, 0);
  });

  it("the fake's SigV4 check fails when the body or the path is altered after signing", async () => {
    const bedrock = await start();
    await bedrock.complete(ask('Hi'), options());
    const signed = fake.requests.at(-1)!;
    const expect = { region: REGION, service: 'bedrock' };
    assert.equal(verifySigV4(signed, [KEY], expect).ok, true);
    const body = verifySigV4({ ...signed, text: signed.text.replace('Hi', 'Ho') }, [KEY], expect);
    assert.equal(body.ok, false);
    const path = verifySigV4({ ...signed, path: '/model/amazon.nova-lite-v1:0/converse' }, [KEY], expect);
    assert.equal(path.ok, false, 'the path must be signed in its encoded form');
    const wrongKey = verifySigV4(signed, [{ ...KEY, secretAccessKey: 'other' }], expect);
    assert.equal(wrongKey.ok, false);
  });

  it('an inference-profile ARN is one encoded path segment, signed double-encoded', async () => {
    const bedrock = await start();
    const completion = await bedrock.complete(ask('Hi', { model: PROFILE_ARN }), options());
    const sent = fake.requests.at(-1)!;
    assert.equal(
      sent.path,
      '/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse',
    );
    assert.equal(fake.refused.length, 0, 'the signature over the encoded ARN was accepted');
    assert.equal(completion.choices[0]?.message.content, `Hello from ${PROFILE_ARN}.`);
    const chunks = await collect(await bedrock.stream(ask('Hi', { model: PROFILE_ARN }), options()));
    assert.equal(fake.requests.at(-1)!.path.endsWith('%3A0/converse-stream'), true);
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), `Hello from ${PROFILE_ARN}.`);
  });

  it('streaming text: eventstream frames cut at odd offsets become chunks, finish reason, then usage', async () => {
    const bedrock = await start();
    const chunks = await collect(await bedrock.stream(ask('Hi'), options()));
    assert.equal(fake.requests.at(-1)!.path, '/model/amazon.nova-lite-v1%3A0/converse-stream');
    assert.equal(chunks[0]?.choices[0]?.delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, `Hello from ${NOVA}.`);
    assert.ok(chunks.filter((c) => c.choices[0]?.delta.content).length > 1, 'one chunk per delta');
    const finish = chunks.findIndex((c) => c.choices[0]?.finish_reason);
    assert.equal(chunks[finish]?.choices[0]?.finish_reason, 'stop');
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, { prompt_tokens: 21, completion_tokens: 9, total_tokens: 30 });
    assert.ok(finish < chunks.length - 1, 'usage after the finish reason');
  });

  it('tools: toolSpec and toolChoice sent; toolUse answered and streamed with input split across deltas; the id round-trips', async () => {
    const bedrock = await start();
    const completion = await bedrock.complete(
      ask('Weather in Paris?', { tools: [weather], tool_choice: 'required' }),
      options(),
    );
    const sent = fake.requests.at(-1)!.body as { toolConfig: unknown };
    assert.deepEqual(sent.toolConfig, {
      tools: [
        {
          toolSpec: {
            name: 'get_weather',
            description: 'Current weather',
            inputSchema: { json: weather.function.parameters },
          },
        },
      ],
      toolChoice: { any: {} },
    });
    const call = completion.choices[0]!.message.tool_calls![0]!;
    assert.equal(call.id, 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { location: 'Paris, France', unit: 'celsius' });
    assert.equal(completion.choices[0]?.finish_reason, 'tool_calls');

    const chunks = await collect(
      await bedrock.stream(
        ask('Weather?', {
          tools: [weather],
          tool_choice: { type: 'function', function: { name: 'get_weather' } },
        }),
        options(),
      ),
    );
    assert.deepEqual(
      (fake.requests.at(-1)!.body as { toolConfig: { toolChoice: unknown } }).toolConfig.toolChoice,
      {
        tool: { name: 'get_weather' },
      },
    );
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    assert.equal(deltas[0]?.id, 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q');
    assert.equal(deltas[0]?.function?.name, 'get_weather');
    assert.equal(deltas.filter((d) => d.function?.arguments).length, 3, 'three argument pieces');
    assert.deepEqual(JSON.parse(deltas.map((d) => d.function?.arguments ?? '').join('')), {
      location: 'Paris, France',
      unit: 'celsius',
    });
    assert.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'tool_calls');

    // The next turn: the assistant's toolUse and the tool's result carry the same id.
    const answer = await bedrock.complete(
      {
        model: NOVA,
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather?' },
          { role: 'assistant', content: null, tool_calls: [call] },
          { role: 'tool', tool_call_id: call.id, content: '18°C, sunny' },
        ],
      },
      options(),
    );
    const turns = fake.requests.at(-1)!.body.messages as {
      role: string;
      content: Record<string, unknown>[];
    }[];
    assert.deepEqual(turns[1], {
      role: 'assistant',
      content: [
        {
          toolUse: {
            toolUseId: call.id,
            name: 'get_weather',
            input: { location: 'Paris, France', unit: 'celsius' },
          },
        },
      ],
    });
    assert.deepEqual(turns[2], {
      role: 'user',
      content: [{ toolResult: { toolUseId: call.id, content: [{ text: '18°C, sunny' }] } }],
    });
    assert.equal(answer.choices[0]?.message.content, `The tool ${call.id} said: 18°C, sunny`);
  });

  it('stop reasons: max_tokens → length, stop_sequence → stop, guardrail → 400 content_filtered (stream: content_filter)', async () => {
    const bedrock = await start();
    const long = await bedrock.complete(ask('Hi', { max_tokens: 2 }), options());
    assert.equal(long.choices[0]?.finish_reason, 'length');
    assert.equal(long.choices[0]?.message.content, 'Hello from ');
    const stopped = await bedrock.complete(ask('Hi', { stop: ['from'] }), options());
    assert.deepEqual(
      (fake.requests.at(-1)!.body.inferenceConfig as { stopSequences: string[] }).stopSequences,
      ['from'],
    );
    assert.equal(stopped.choices[0]?.finish_reason, 'stop');
    assert.equal(stopped.choices[0]?.message.content, 'Hello ');
    fake.faults.push({ kind: 'guardrail' });
    const blocked = await rejection(bedrock.complete(ask('something forbidden'), options()));
    assert.equal(blocked.details.status, 400);
    assert.equal(blocked.details.code, 'content_filtered');
    assert.equal(blocked.details.retryable, false);
    assert.match(blocked.message, /guardrail_intervened.*cannot answer/);
    fake.faults.push({ kind: 'guardrail' });
    const chunks = await collect(await bedrock.stream(ask('something forbidden'), options()));
    assert.equal(
      chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason,
      'content_filter',
    );
  });

  it('throttling is a retryable 429, unavailable a retryable 503, validation a relayed 400', async () => {
    const bedrock = await start();
    fake.faults.push({ kind: 'throttle' });
    const throttled = await rejection(bedrock.complete(ask('Hi'), options()));
    assert.equal(throttled.details.status, 429);
    assert.equal(throttled.details.code, 'upstream_rate_limited');
    assert.equal(throttled.retryable, true);
    fake.faults.push({ kind: 'unavailable' });
    const unavailable = await rejection(bedrock.complete(ask('Hi'), options()));
    assert.equal(unavailable.details.status, 503);
    assert.equal(unavailable.retryable, true);
    fake.faults.push({ kind: 'validation', message: 'A conversation must start with a user message.' });
    const invalid = await rejection(bedrock.stream(ask('Hi'), options()));
    assert.equal(invalid.details.status, 400);
    assert.equal(invalid.details.code, 'upstream_invalid_request');
    assert.equal(invalid.message, 'A conversation must start with a user message.');
    assert.equal(invalid.retryable, false);
    const unknownModel = await rejection(
      bedrock.complete(ask('Hi', { model: 'amazon.nope-v9:0' }), options()),
    );
    assert.equal(unknownModel.details.status, 400);
    assert.match(unknownModel.message, /model identifier is invalid/);
  });

  it('an exception frame mid-stream is a ProviderError after the chunks before it', async () => {
    const bedrock = await start();
    fake.faults.push({ kind: 'stream_exception', type: 'throttlingException', message: 'Too many tokens' });
    const seen: ChatCompletionChunk[] = [];
    const err = await rejection(
      (async () => {
        for await (const { chunk } of await bedrock.stream(ask('Hi'), options())) seen.push(chunk);
      })(),
    );
    assert.ok(
      seen.some((c) => c.choices[0]?.delta.content),
      'text before the exception',
    );
    assert.equal(err.details.status, 429);
    assert.equal(err.retryable, true);
    assert.match(err.message, /throttlingException.*Too many tokens/);
    fake.faults.push({
      kind: 'stream_exception',
      type: 'modelStreamErrorException',
      message: 'model crashed',
    });
    const crashed = await rejection(collect(await bedrock.stream(ask('Hi'), options())));
    assert.equal(crashed.details.status, 502);
    assert.equal(crashed.details.code, 'upstream_error');
  });

  it('refused credentials are a 502 upstream_auth_failed that never shows the secret', async () => {
    fake = await startFakeBedrock({ region: REGION, keys: [KEY] });
    const wrong = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      credentials: staticKeys({
        accessKeyId: 'AKIAUNKNOWN0000000000',
        secretAccessKey: 'not-the-secret-abcdef',
      }),
    });
    const err = await rejection(wrong.complete(ask('Hi'), options()));
    assert.equal(err.details.status, 502);
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.equal(err.retryable, false);
    assert.deepEqual(
      fake.refused.map((r) => r.type),
      ['UnrecognizedClientException'],
    );
    const badSecret = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      credentials: staticKeys({ ...KEY, secretAccessKey: 'wrong-secret-0123456789' }),
    });
    const sig = await rejection(badSecret.complete(ask('Hi'), options()));
    assert.equal(sig.details.code, 'upstream_auth_failed');
    assert.equal(fake.refused.at(-1)?.type, 'InvalidSignatureException');
    assert.ok(!sig.message.includes('wrong-secret-0123456789'));
    await assert.rejects(wrong.checkAccess(AbortSignal.timeout(5_000)), /refused Colloquy's credentials/);
  });

  it('session-token credentials send x-amz-security-token, and it is signed', async () => {
    const temporary = {
      accessKeyId: 'ASIATEMPORARY0000000',
      secretAccessKey: 'temporary-secret-0123456789',
      sessionToken: 'FwoGZXIvYXdzEFAaDtoken',
    };
    fake = await startFakeBedrock({ region: REGION, keys: [temporary] });
    const bedrock = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      credentials: staticKeys(temporary),
    });
    await bedrock.complete(ask('Hi'), options());
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.headers['x-amz-security-token'], temporary.sessionToken);
    assert.match(String(sent.headers.authorization), /SignedHeaders=[^,]*x-amz-security-token/);
    assert.equal(fake.refused.length, 0);
  });

  it('credentials about to expire are refreshed before the call: no request is refused', async () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const first = {
      accessKeyId: 'ASIAFIRST00000000000',
      secretAccessKey: 'first-secret-0123456789',
      sessionToken: 'token-1',
    };
    const second = {
      accessKeyId: 'ASIASECOND0000000000',
      secretAccessKey: 'second-secret-0123456789',
      sessionToken: 'token-2',
    };
    const issued = [first, second];
    let calls = 0;
    const source = async () => ({
      ...issued[Math.min(calls++, 1)]!,
      expiration: new Date(clock + 15 * 60_000),
    });
    fake = await startFakeBedrock({ region: REGION, keys: [first] });
    const bedrock = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      credentials: new AwsCredentials(source, () => clock),
    });
    await bedrock.complete(ask('Hi'), options());
    await bedrock.complete(ask('Hi'), options());
    assert.equal(calls, 1, 'cached while fresh');
    // Ten minutes later the first credentials are within the refresh window; AWS will soon reject them.
    clock += 15 * 60_000 - REFRESH_BEFORE_MS + 1;
    fake.keys.splice(0, fake.keys.length, second);
    await bedrock.complete(ask('Hi'), options());
    assert.equal(calls, 2);
    assert.equal(fake.requests.at(-1)!.headers['x-amz-security-token'], 'token-2');
    assert.equal(fake.refused.length, 0, 'no request was signed with the old credentials');
  });

  it('a Bedrock API key is sent as Authorization: Bearer, with no SigV4', async () => {
    fake = await startFakeBedrock({ region: REGION, apiKey: 'ABSKbedrock-api-key-0123456789' });
    const bedrock = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      apiKey: 'ABSKbedrock-api-key-0123456789',
    });
    const completion = await bedrock.complete(ask('Hi'), options());
    const sent = fake.requests.at(-1)!;
    assert.equal(sent.headers.authorization, 'Bearer ABSKbedrock-api-key-0123456789');
    assert.equal(sent.headers['x-amz-date'], undefined);
    assert.equal(completion.choices[0]?.message.content, `Hello from ${NOVA}.`);
    const wrong = new BedrockProvider({
      region: REGION,
      baseUrl: fake.url,
      apiKey: 'ABSKwrong-key-0123456789',
    });
    const err = await rejection(wrong.complete(ask('Hi'), options()));
    assert.equal(err.details.code, 'upstream_auth_failed');
    assert.ok(!err.message.includes('ABSKwrong-key-0123456789'));
    await bedrock.checkAccess(AbortSignal.timeout(5_000));
  });

  it('embeddings: Titan v2, one signed InvokeModel call per input, dimensions and normalize sent', async () => {
    const bedrock = await start();
    const before = fake.requests.length;
    const answer = await bedrock.embed(
      { model: 'amazon.titan-embed-text-v2:0', input: ['one', 'two words'], dimensions: 256 },
      options(),
    );
    const calls = fake.requests.slice(before);
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.path, '/model/amazon.titan-embed-text-v2%3A0/invoke');
    assert.deepEqual(calls[1]!.body, { inputText: 'two words', normalize: true, dimensions: 256 });
    assert.equal(answer.data.length, 2);
    assert.equal((answer.data[1]!.embedding as number[]).length, 256);
    assert.deepEqual(answer.usage, { prompt_tokens: 3, total_tokens: 3 });
    assert.equal(fake.refused.length, 0);
    const base64 = await bedrock.embed(
      { model: 'amazon.titan-embed-text-v2:0', input: 'one', dimensions: 256, encoding_format: 'base64' },
      options(),
    );
    assert.equal(Buffer.from(base64.data[0]!.embedding as string, 'base64').length, 256 * 4);
    const bad = await rejection(
      bedrock.embed({ model: 'amazon.titan-embed-text-v2:0', input: [1, 2, 3] }, options()),
    );
    assert.equal(bad.details.status, 400);
  });

  it('embeddings: Cohere Embed takes all texts in one call with input_type', async () => {
    const bedrock = await start();
    const answer = await bedrock.embed(
      { model: 'cohere.embed-english-v3', input: ['a', 'bcd'], input_type: 'search_query' },
      options(),
    );
    assert.equal(fake.requests.at(-1)!.path, '/model/cohere.embed-english-v3/invoke');
    assert.deepEqual(fake.requests.at(-1)!.body, { texts: ['a', 'bcd'], input_type: 'search_query' });
    assert.deepEqual(
      answer.data.map((d) => (d.embedding as number[])[0]),
      [1, 3],
    );
    await bedrock.embed({ model: 'cohere.embed-english-v3', input: 'doc' }, options());
    assert.equal(fake.requests.at(-1)!.body.input_type, 'search_document');
  });

  it('a stream that stalls between frames ends with a 504 upstream_timeout after the chunks it sent', async () => {
    const bedrock = await start();
    fake.faults.push({ kind: 'stall' });
    const seen: ChatCompletionChunk[] = [];
    const err = await rejection(
      (async () => {
        const stalled = await bedrock.stream(ask('Hi'), {
          ...options(),
          timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 200, totalMs: 30_000 },
        });
        for await (const { chunk } of stalled) seen.push(chunk);
      })(),
    );
    assert.equal(err.details.code, 'upstream_timeout');
    assert.match(err.message, /gap between chunks/);
    assert.equal(seen[0]?.choices[0]?.delta.content, 'Hello ');
  });

  it('a body that ends inside a frame, or a frame failing its CRC, is a retryable upstream_bad_response', async () => {
    const bedrock = await start();
    fake.faults.push({ kind: 'truncate' });
    const err = await rejection(collect(await bedrock.stream(ask('Hi'), options())));
    assert.equal(err.details.code, 'upstream_bad_response');
    assert.equal(err.retryable, true);
    assert.match(err.message, /Truncated event message/);
    fake.faults.push({ kind: 'corrupt' });
    const corrupt = await rejection(collect(await bedrock.stream(ask('Hi'), options())));
    assert.equal(corrupt.details.code, 'upstream_bad_response');
    assert.match(corrupt.message, /corrupt event stream frame.*checksum/i);
  });
});
