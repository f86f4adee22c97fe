import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { type ChatStack, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';

/**
 * The Responses API passed through to an OpenAI upstream (issue 20: same protocol both sides, the body
 * untouched apart from the model), and translated answers cached like chat completions. The upstream
 * answers with OpenAI's documented shapes: the response object of
 * https://platform.openai.com/docs/api-reference/responses/object (a reasoning item, a message item) and
 * the streaming events of https://platform.openai.com/docs/api-reference/responses-streaming.
 */
const upstreamResponse = (id: string, text: string) => ({
  id,
  object: 'response',
  created_at: 1741476542,
  status: 'completed',
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model: 'o4-mini-2025-04-16',
  output: [
    {
      type: 'reasoning',
      id: 'rs_67ccd2bf17f0819081ff3bb2cf6508e6',
      summary: [],
      encrypted_content: 'gAAAAABoISQ24OyVRYbkYfukb…',
    },
    {
      type: 'message',
      id: 'msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [] }],
    },
  ],
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: 'low', summary: null },
  store: true,
  temperature: 1.0,
  text: { format: { type: 'text' } },
  tool_choice: 'auto',
  tools: [{ type: 'web_search_preview' }],
  top_p: 1.0,
  truncation: 'disabled',
  usage: {
    input_tokens: 36,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 87,
    output_tokens_details: { reasoning_tokens: 64 },
    total_tokens: 123,
  },
  user: null,
  metadata: {},
});

/** A streamed answer, event by event, as the streaming reference lists them. */
function streamEvents(id: string, text: string): string[] {
  const final = upstreamResponse(id, text);
  const progress = { ...final, status: 'in_progress', output: [], usage: null };
  const message = final.output[1]!;
  const events: Record<string, unknown>[] = [
    { type: 'response.created', response: progress },
    { type: 'response.in_progress', response: progress },
    {
      type: 'response.output_item.added',
      output_index: 0,
      item: { ...message, status: 'in_progress', content: [] },
    },
    {
      type: 'response.content_part.added',
      item_id: message.id,
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    },
    ...text.split(/(?<= )/).map((delta) => ({
      type: 'response.output_text.delta',
      item_id: message.id,
      output_index: 0,
      content_index: 0,
      delta,
    })),
    { type: 'response.output_text.done', item_id: message.id, output_index: 0, content_index: 0, text },
    { type: 'response.output_item.done', output_index: 0, item: message },
    { type: 'response.completed', response: final },
  ];
  return events.map((e, i) => `event: ${e.type}\ndata: ${JSON.stringify({ ...e, sequence_number: i })}\n\n`);
}

describe('Responses API passed through to an OpenAI upstream', () => {
  let s: ChatStack;
  let oai: ScriptedUpstream;
  let client: OpenAI;

  before(async () => {
    oai = await startScriptedUpstream();
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0' },
      routing: () => ({
        providers: [{ name: 'oai', type: 'openai', base_url: `${oai.url}/v1`, pass_through: ['responses'] }],
        models: [{ name: 'reasoner', deployments: [{ provider: 'oai', model: 'o4-mini' }] }],
      }),
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await oai?.close();
  });

  it('not streaming: built-in tools, include and reasoning reach the upstream; its answer comes back whole', async () => {
    const answer = upstreamResponse(
      'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b',
      'Paris is sunny.',
    );
    oai.handle((_req, res) => sendJson(res, 200, answer));
    const params = {
      model: 'reasoner',
      input: [
        { role: 'user' as const, content: [{ type: 'input_text' as const, text: 'Weather in Paris?' }] },
      ],
      tools: [{ type: 'web_search_preview' as const }],
      include: ['reasoning.encrypted_content' as const],
      reasoning: { effort: 'low' as const },
      truncation: 'auto' as const,
    };
    const { data, response } = await client.responses.create(params).withResponse();
    assert.deepEqual(JSON.parse(JSON.stringify(data)), { ...answer, output_text: 'Paris is sunny.' });
    const sent = oai.requests.at(-1)!;
    assert.equal(sent.path, '/v1/responses');
    assert.equal(sent.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.deepEqual(sent.body, { ...params, model: 'o4-mini', stream: false });
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.protocol, 'responses');
    assert.equal(Number(row.prompt_tokens), 36);
    assert.equal(Number(row.completion_tokens), 87);
    const stored = await client.responses.retrieve(answer.id);
    assert.equal(stored.output_text, 'Paris is sunny.');
  });

  it('previous_response_id: Colloquy’s stored turns go upstream as input; the answer continues the chain', async () => {
    const first = upstreamResponse('resp_first000000000000000000000000000000000000000', 'Hi there.');
    oai.handle((_req, res) => sendJson(res, 200, first));
    await client.responses.create({ model: 'reasoner', input: 'Hello' });
    const second = upstreamResponse('resp_second00000000000000000000000000000000000000', 'Still here.');
    oai.handle((_req, res) => sendJson(res, 200, second));
    const next = await client.responses.create({
      model: 'reasoner',
      previous_response_id: first.id,
      input: 'Are you there?',
    });
    assert.equal(next.previous_response_id, first.id);
    const sent = oai.requests.at(-1)!.body;
    assert.equal(sent.previous_response_id, undefined, 'the id is Colloquy’s, not the upstream’s');
    const input = sent.input as { type?: string; role?: string; id?: string }[];
    assert.deepEqual(
      input.map((i) => i.type ?? i.role),
      ['message', 'reasoning', 'message', 'message'],
    );
    assert.equal(input[1]!.id, first.output[0]!.id, 'a reasoning item keeps its id');
    assert.equal(input[2]!.id, undefined, 'other items go by content');
  });

  it('streaming: the upstream’s events relayed as they came; the final response stored', async () => {
    const id = 'resp_stream0000000000000000000000000000000000000';
    oai.handle((_req, res) => sendSse(res, streamEvents(id, 'Sunny and 21 degrees.')));
    const stream = await client.responses.create({ model: 'reasoner', input: 'Weather?', stream: true });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    assert.deepEqual(
      events.map((e) => e.sequence_number),
      events.map((_, i) => i),
    );
    assert.equal(events[0]!.type, 'response.created');
    const done = events.at(-1)!;
    assert.ok(done.type === 'response.completed');
    assert.equal(done.response.id, id);
    assert.equal(oai.requests.at(-1)!.body.stream, true);
    const stored = await client.responses.retrieve(id);
    assert.equal(stored.output_text, 'Sunny and 21 degrees.');
  });

  it('a stream cut short: Responses’ error event continues the upstream’s sequence', async () => {
    oai.handle((_req, res) =>
      sendSse(res, streamEvents('resp_cut', 'Never finished here.').slice(0, 5), 'destroy'),
    );
    const response = await fetch(`${s.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'reasoner', input: 'Weather?', stream: true }),
    });
    const blocks = (await response.text()).split('\n\n').filter(Boolean);
    assert.equal(blocks.length, 6);
    const last = JSON.parse(blocks.at(-1)!.split('\ndata: ')[1]!) as {
      type: string;
      sequence_number: number;
    };
    assert.equal(last.type, 'error');
    assert.equal(last.sequence_number, 5);
    const row = await s.usageRow(response.headers.get('x-request-id')!);
    assert.equal(row.status, 'partial');
  });
});

describe('Responses API: translated answers are cached like chat completions', () => {
  let s: ChatStack;
  let client: OpenAI;
  before(async () => {
    s = await startChatStack({ env: { UPSTREAM_RETRIES: '0', RESPONSE_CACHE_TTL_SECONDS: '60' } });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
  });

  it('a repeated deterministic request is a hit, streaming or not; the upstream is asked once', async () => {
    const params = { model: 'gpt-4o-mini', input: 'Cache me', temperature: 0 };
    const calls = () => s.fake.requests.filter((r) => r.path === '/v1/chat/completions').length;
    const before = calls();
    const first = await client.responses.create(params).withResponse();
    assert.equal(first.response.headers.get('x-cache'), 'miss');
    const second = await client.responses.create(params).withResponse();
    assert.equal(second.response.headers.get('x-cache'), 'hit');
    assert.equal(second.data.output_text, first.data.output_text);
    assert.notEqual(second.data.id, first.data.id, 'a new response, stored under its own id');
    assert.equal((await client.responses.retrieve(second.data.id)).output_text, first.data.output_text);
    const streamed = await client.responses.create({ ...params, stream: true });
    let text = '';
    for await (const event of streamed) if (event.type === 'response.output_text.delta') text += event.delta;
    assert.equal(text, first.data.output_text);
    assert.equal(calls(), before + 1);
    const row = await s.usageRow(second.response.headers.get('x-request-id')!);
    assert.equal(Number(row.cached), 1);
  });
});
