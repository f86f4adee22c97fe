import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { type ChatStack, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';

/**
 * POST /v1/completions (issue 20: legacy completions, fill-in-the-middle autocomplete) with the real `openai`
 * SDK. The upstream speaks OpenAI's legacy completions as documented at
 * https://platform.openai.com/docs/api-reference/completions/create and /completions/object: a
 * `text_completion` object; streamed, `data:` chunks of the same shape, a usage chunk with empty `choices`
 * when `stream_options.include_usage`, then `data: [DONE]`.
 */
const completion = {
  id: 'cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7',
  object: 'text_completion',
  created: 1589478378,
  model: 'gpt-3.5-turbo-instruct',
  system_fingerprint: 'fp_44709d6fcb',
  choices: [{ text: '\n\nThis is indeed a test', index: 0, logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
};
const streamChunk = (text: string, finish: string | null = null) =>
  `data: ${JSON.stringify({
    id: 'cmpl-7iA7iJjj8V2zOkCGvWF2hAkDWBQZe',
    object: 'text_completion',
    created: 1690759702,
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    model: 'gpt-3.5-turbo-instruct',
  })}\n\n`;
const usageChunk = `data: ${JSON.stringify({
  id: 'cmpl-7iA7iJjj8V2zOkCGvWF2hAkDWBQZe',
  object: 'text_completion',
  created: 1690759702,
  choices: [],
  model: 'gpt-3.5-turbo-instruct',
  usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 },
})}\n\n`;

describe('the openai SDK: legacy completions (/v1/completions)', () => {
  let s: ChatStack;
  let oai: ScriptedUpstream;
  let client: OpenAI;

  before(async () => {
    oai = await startScriptedUpstream();
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0' },
      routing: () => ({
        providers: [
          { name: 'oai', type: 'openai', base_url: `${oai.url}/v1` },
          { name: 'claude', type: 'anthropic', base_url: 'http://127.0.0.1:9' },
        ],
        models: [
          { name: 'instruct', deployments: [{ provider: 'oai', model: 'gpt-3.5-turbo-instruct' }] },
          { name: 'claude-sonnet', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
        ],
      }),
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await oai?.close();
  });

  it('not streaming: the client’s body goes through (model replaced), the answer comes back as it came', async () => {
    oai.handle((_req, res) => sendJson(res, 200, completion));
    const { data, response } = await client.completions
      .create({
        model: 'instruct',
        prompt: 'Say this is a test',
        suffix: ' -- end',
        max_tokens: 7,
        temperature: 0,
        echo: false,
        logprobs: null,
      })
      .withResponse();
    assert.deepEqual(data, completion);
    const sent = oai.requests.at(-1)!;
    assert.equal(sent.path, '/v1/completions');
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`, 'the client’s key is never forwarded');
    assert.deepEqual(sent.body, {
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'Say this is a test',
      suffix: ' -- end',
      max_tokens: 7,
      temperature: 0,
      echo: false,
      logprobs: null,
      stream: false,
    });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.protocol, 'completions');
    assert.equal(row.status, 'ok');
    assert.equal(Number(row.prompt_tokens), 5);
    assert.equal(Number(row.completion_tokens), 7);
  });

  it('streaming: chunks relayed, the usage chunk only to a client that asked, then [DONE]', async () => {
    oai.handle((_req, res) =>
      sendSse(res, [
        streamChunk('This'),
        streamChunk(' is'),
        streamChunk(' a test', 'stop'),
        usageChunk,
        'data: [DONE]\n\n',
      ]),
    );
    const texts: string[] = [];
    let usage: unknown;
    const stream = await client.completions.create({
      model: 'instruct',
      prompt: ['Say', 'this'],
      stream: true,
    });
    for await (const chunk of stream) {
      texts.push(...chunk.choices.map((c) => c.text));
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(texts.join(''), 'This is a test');
    assert.equal(usage, undefined, 'the client did not ask for usage');
    const sent = oai.requests.at(-1)!.body;
    assert.deepEqual(sent.prompt, ['Say', 'this']);
    assert.equal(sent.stream, true);
    assert.deepEqual(sent.stream_options, { include_usage: true }, 'usage is always asked for the ledger');

    const { data: withUsage, response } = await client.completions
      .create({
        model: 'instruct',
        prompt: 'Say this',
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    let last: OpenAI.Completion | undefined;
    for await (const chunk of withUsage) last = chunk;
    assert.deepEqual(last?.usage, { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.protocol, 'completions');
    assert.equal(Number(row.completion_tokens), 3);
  });

  it('a model whose upstream has no legacy completions: a 400 model_not_supported, nothing sent', async () => {
    await assert.rejects(
      client.completions.create({ model: 'claude-sonnet', prompt: 'def fib(n):' }),
      (err) =>
        err instanceof OpenAI.BadRequestError &&
        (err.error as { code?: string }).code === 'model_not_supported',
    );
    await assert.rejects(
      client.completions.create({ model: 'no-such-model', prompt: 'x' }),
      (err) => err instanceof OpenAI.NotFoundError,
    );
  });

  it('an upstream that fails mid-stream: the error in-band, then [DONE]; the row is partial', async () => {
    oai.handle((_req, res) => sendSse(res, [streamChunk('def fib(n):')], 'destroy'));
    const response = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'instruct', prompt: '#', stream: true }),
    });
    const text = await response.text();
    const events = text.split('\n\n').filter(Boolean);
    assert.equal(JSON.parse(events[0]!.slice(6)).choices[0].text, 'def fib(n):');
    assert.ok(JSON.parse(events.at(-2)!.slice(6)).error.message, 'an error event');
    assert.equal(events.at(-1), 'data: [DONE]');
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.status, 'partial');
  });

  it('GET /v1/models says which models serve completions', async () => {
    const models = await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${s.apiKey}` } });
    const list = (await models.json()) as { data: { id: string; endpoints?: string[] }[] };
    assert.ok(list.data.find((m) => m.id === 'instruct')?.endpoints?.includes('completions'));
    assert.ok(!list.data.find((m) => m.id === 'claude-sonnet')?.endpoints?.includes('completions'));
  });
});
