import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources';
import { type FakeBedrock, startFakeBedrock } from '../fake-upstream/clouds/bedrock.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * The real `openai` SDK against Colloquy, which fronts a fake Bedrock Runtime (it verifies every SigV4
 * signature) configured by the AWS variables alone.
 */

const KEY = { accessKeyId: 'AKIASDKTEST000000000', secretAccessKey: 'sdk-test-secret-0123456789abcdef' };
const MODEL = 'bedrock/amazon.nova-lite-v1:0';
const PROFILE =
  'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0';
const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

describe('the openai SDK against Colloquy fronting AWS Bedrock', () => {
  let bedrock: FakeBedrock;
  let s: ChatStack;
  let client: OpenAI;

  before(async () => {
    bedrock = await startFakeBedrock({ region: 'us-east-1', keys: [KEY] });
    s = await startChatStack({
      upstream: false,
      routing: null,
      env: {
        AWS_ACCESS_KEY_ID: KEY.accessKeyId,
        AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME: bedrock.url,
        UPSTREAM_RETRIES: '2',
      },
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await bedrock?.close();
  });

  it('chat.completions.create: a signed Converse call, the answer and usage mapped', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
      ],
    });
    assert.equal(
      completion.choices[0]?.message.content,
      'Hello from amazon.nova-lite-v1:0. System: Be brief.',
    );
    assert.equal(completion.usage?.total_tokens, 30);
    assert.equal(bedrock.requests.at(-1)!.path, '/model/amazon.nova-lite-v1%3A0/converse');
    assert.deepEqual(bedrock.refused, []);
  });

  it('an inference-profile ARN as the model name reaches Bedrock encoded and signed', async () => {
    const completion = await client.chat.completions.create({
      model: `bedrock/${PROFILE}`,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.message.content, `Hello from ${PROFILE}.`);
    assert.deepEqual(bedrock.refused, []);
  });

  it('streaming: the reply reassembles from eventstream frames, usage last', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(
      chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''),
      'Hello from amazon.nova-lite-v1:0.',
    );
    assert.equal(chunks.at(-1)?.usage?.total_tokens, 30);
    assert.equal(bedrock.requests.at(-1)!.path, '/model/amazon.nova-lite-v1%3A0/converse-stream');
  });

  it('tools, streamed then answered: the SDK assembles the call, and its id comes back as toolUseId', async () => {
    const runner = client.chat.completions.stream({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [weather],
    });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.ok(call?.type === 'function');
    assert.equal(call.id, 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { location: 'Paris, France', unit: 'celsius' });
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
    const answer = await client.chat.completions.create({
      model: MODEL,
      tools: [weather],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '18°C' },
      ],
    });
    assert.equal(answer.choices[0]?.message.content, `The tool ${call.id} said: 18°C`);
  });

  it('throttling is retried and the client sees only the answer', async () => {
    bedrock.faults.push({ kind: 'throttle' });
    const before = bedrock.requests.length;
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.equal(bedrock.requests.length, before + 2);
  });

  it('a ValidationException is a 400 the SDK raises as BadRequestError, not retried', async () => {
    bedrock.faults.push({ kind: 'validation', message: 'Malformed input request' });
    const before = bedrock.requests.length;
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.match(err.message, /Malformed input request/);
        return true;
      },
    );
    assert.equal(bedrock.requests.length, before + 1);
  });
});
