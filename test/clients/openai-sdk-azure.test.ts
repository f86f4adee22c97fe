import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ChatCompletionChunk, ChatCompletionTool } from 'openai/resources';
import { type FakeAzure, startFakeAzure } from '../fake-upstream/clouds/azure.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/** The real `openai` SDK against Colloquy, which fronts a fake Azure OpenAI resource configured by env alone. */

const AZURE_KEY = 'azure-key-for-the-sdk-test-0123456789';
const MODEL = 'azure/gpt-4o-prod';
const weather: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  },
};

describe('the openai SDK against Colloquy fronting Azure OpenAI', () => {
  let azure: FakeAzure;
  let s: ChatStack;
  let client: OpenAI;

  before(async () => {
    azure = await startFakeAzure({ apiKey: AZURE_KEY });
    s = await startChatStack({
      upstream: false,
      routing: null,
      env: {
        AZURE_OPENAI_ENDPOINT: azure.url,
        AZURE_OPENAI_API_KEY: AZURE_KEY,
        AZURE_OPENAI_API_VERSION: '2024-10-21',
        UPSTREAM_RETRIES: '2',
      },
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await azure?.close();
  });

  it('chat.completions.create reaches the deployment path with the api-version', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.message.content, 'Hello from Azure deployment gpt-4o-prod.');
    assert.equal(completion.usage?.total_tokens, 19);
    const sent = azure.requests.at(-1)!;
    assert.equal(sent.path, '/openai/deployments/gpt-4o-prod/chat/completions');
    assert.equal(sent.query.get('api-version'), '2024-10-21');
  });

  it('streaming: the reply reassembles; the prompt-filter chunk does not confuse the SDK', async () => {
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
      'Hello from Azure deployment gpt-4o-prod.',
    );
    assert.equal(chunks.at(-1)?.usage?.total_tokens, 19);
  });

  it('tools, streamed: the SDK assembles the call from arguments split across chunks', async () => {
    const runner = client.chat.completions.stream({
      model: MODEL,
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [weather],
    });
    const final = await runner.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.equal(call?.id, 'call_az1');
    assert.equal(call?.type === 'function' ? call.function.name : undefined, 'get_weather');
    assert.deepEqual(JSON.parse(call?.type === 'function' ? call.function.arguments : '{}'), {
      location: 'Paris',
      unit: 'celsius',
    });
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
  });

  it('a prompt refused by the content filter is a 400 content_filtered the SDK raises as BadRequestError', async () => {
    azure.faults.push({ kind: 'prompt_filtered' });
    const before = azure.requests.length;
    await assert.rejects(
      client.chat.completions.create({
        model: MODEL,
        messages: [{ role: 'user', content: 'something violent' }],
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.code, 'content_filtered');
        return true;
      },
    );
    assert.equal(azure.requests.length, before + 1, 'not retried');
  });

  it("throttling is retried after Azure's retry-after-ms and the client sees only the answer", async () => {
    azure.faults.push({ kind: 'throttle', retryAfterMs: 100 });
    const before = azure.requests.length;
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    assert.equal(completion.choices[0]?.finish_reason, 'stop');
    assert.equal(azure.requests.length, before + 2);
  });

  it('an upstream error echoing the key reaches neither the client nor the logs', async () => {
    azure.faults.push({ kind: 'echo_key' });
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.APIError);
        assert.doesNotMatch(String(err.message), /azure-key-for-the-sdk-test/);
        return true;
      },
    );
    assert.doesNotMatch(s.t.logText(), /azure-key-for-the-sdk-test/);
  });
});
