import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { ResponseStreamEvent } from 'openai/resources/responses/responses';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

/**
 * POST /v1/responses (issue 20) with the real `openai` SDK, translated onto a fake OpenAI chat-completions
 * upstream; stored responses on SQLite and PostgreSQL. Shapes per
 * https://platform.openai.com/docs/api-reference/responses and /responses-streaming.
 */
const REPLY = 'Hello from the fake upstream, streaming word by word.';
const weather = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] },
  strict: false,
};

for (const dialect of DIALECTS) {
  describe(`the openai SDK: responses (${dialect})`, () => {
    let s: ChatStack;
    let client: OpenAI;
    const upstreamBody = () => s.fake.requests.filter((r) => r.path === '/v1/chat/completions').at(-1)!.body;

    before(async () => {
      s = await startChatStack({ dialect, env: { UPSTREAM_RETRIES: '0' } });
      client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
    });
    after(async () => {
      await s?.close();
    });

    it('responses.create: text, usage, the ledger row under protocol responses', async () => {
      const { data: response, response: http } = await client.responses
        .create({
          model: 'gpt-4o-mini',
          instructions: 'Be brief.',
          input: 'Say hello',
          max_output_tokens: 64,
        })
        .withResponse();
      assert.match(response.id, /^resp_/);
      assert.equal(response.object, 'response');
      assert.equal(response.status, 'completed');
      assert.equal(response.output_text, REPLY);
      assert.ok(response.usage && response.usage.total_tokens > 0);
      assert.deepEqual(upstreamBody().messages, [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello' },
      ]);
      assert.equal(upstreamBody().max_completion_tokens, 64);
      const row = await s.usageRow(http.headers.get('x-request-id')!);
      assert.equal(row.protocol, 'responses');
      assert.equal(Number(row.completion_tokens), response.usage.output_tokens);
    });

    it('streaming: the documented events in order, each with its sequence_number', async () => {
      const stream = await client.responses.create({
        model: 'gpt-4o-mini',
        input: 'Say hello',
        stream: true,
      });
      const events: ResponseStreamEvent[] = [];
      for await (const event of stream) events.push(event);
      const types = [...new Set(events.map((e) => e.type))];
      assert.deepEqual(types, [
        'response.created',
        'response.in_progress',
        'response.output_item.added',
        'response.content_part.added',
        'response.output_text.delta',
        'response.output_text.done',
        'response.content_part.done',
        'response.output_item.done',
        'response.completed',
      ]);
      assert.deepEqual(
        events.map((e) => e.sequence_number),
        events.map((_, i) => i),
      );
      const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));
      assert.equal(deltas.join(''), REPLY);
      const done = events.at(-1)!;
      assert.ok(done.type === 'response.completed' && done.response.usage!.output_tokens > 0);
    });

    it('tools: a function_call item, then function_call_output continues via previous_response_id', async () => {
      const first = await client.responses.create({
        model: 'gpt-4o-mini',
        input: 'Weather in Paris?',
        tools: [weather],
        tool_choice: 'auto',
      });
      assert.deepEqual(upstreamBody().tools, [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: weather.description,
            parameters: weather.parameters,
            strict: false,
          },
        },
      ]);
      const call = first.output.find((o) => o.type === 'function_call');
      assert.ok(call && call.type === 'function_call');
      assert.equal(call.name, 'get_weather');
      assert.equal(call.arguments, '{"location":"Paris"}');

      const second = await client.responses.create({
        model: 'gpt-4o-mini',
        previous_response_id: first.id,
        input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temp":21}' }],
        tools: [weather],
      });
      assert.equal(second.output_text, REPLY);
      assert.equal(second.previous_response_id, first.id);
      const messages = upstreamBody().messages as { role: string; tool_call_id?: string }[];
      assert.deepEqual(
        messages.map((m) => m.role),
        ['user', 'assistant', 'tool'],
      );
      assert.equal(messages[2]!.tool_call_id, call.call_id);
    });

    it('streaming tool call: arguments delta and done events, the item done with the full arguments', async () => {
      const stream = await client.responses.create({
        model: 'gpt-4o-mini',
        input: 'Weather in Paris?',
        tools: [weather],
        stream: true,
      });
      const events: ResponseStreamEvent[] = [];
      for await (const event of stream) events.push(event);
      const done = events.find((e) => e.type === 'response.function_call_arguments.done');
      assert.ok(done && done.type === 'response.function_call_arguments.done');
      assert.equal(done.arguments, '{"location":"Paris"}');
      const final = events.at(-1)!;
      assert.ok(final.type === 'response.completed');
      assert.equal(final.response.output.at(-1)!.type, 'function_call');
    });

    it('retrieve and delete a stored response; other callers get 404; store:false is not stored', async () => {
      const created = await client.responses.create({ model: 'gpt-4o-mini', input: 'keep me' });
      const got = await client.responses.retrieve(created.id);
      assert.equal(got.id, created.id);
      assert.equal(got.output_text, REPLY);

      const other = await s.t.inject({
        method: 'GET',
        url: `/v1/responses/${created.id}`,
        headers: { authorization: `Bearer ${TEST_MASTER_KEY}` },
      });
      assert.equal(other.statusCode, 404, 'another caller (the master key) does not see it');
      const otherDelete = await s.t.inject({
        method: 'DELETE',
        url: `/v1/responses/${created.id}`,
        headers: { authorization: `Bearer ${TEST_MASTER_KEY}` },
      });
      assert.equal(otherDelete.statusCode, 404);

      await client.responses.delete(created.id);
      await assert.rejects(client.responses.retrieve(created.id), OpenAI.NotFoundError);
      await assert.rejects(client.responses.delete(created.id), OpenAI.NotFoundError);

      const unstored = await client.responses.create({
        model: 'gpt-4o-mini',
        input: 'forget me',
        store: false,
      });
      assert.equal((unstored as unknown as { store: boolean }).store, false);
      await assert.rejects(client.responses.retrieve(unstored.id), OpenAI.NotFoundError);
      await assert.rejects(
        client.responses.create({
          model: 'gpt-4o-mini',
          input: 'continue',
          previous_response_id: unstored.id,
        }),
        (err) => {
          assert.ok(err instanceof OpenAI.NotFoundError, String(err));
          assert.equal(err.param, 'previous_response_id');
          return true;
        },
      );
    });

    it('error classes: unknown model 404, untranslatable tool 400, bad input 400', async () => {
      await assert.rejects(client.responses.create({ model: 'no-such-model-x', input: 'x' }), (err) =>
        [OpenAI.NotFoundError, OpenAI.BadRequestError].some((c) => err instanceof c),
      );
      await assert.rejects(
        client.responses.create({
          model: 'gpt-4o-mini',
          input: 'x',
          tools: [{ type: 'web_search_preview' }],
        }),
        (err) => err instanceof OpenAI.BadRequestError && err.param === 'tools[0].type',
      );
      await assert.rejects(
        client.responses.create({ model: 'gpt-4o-mini', input: 'x', temperature: 5 }),
        OpenAI.BadRequestError,
      );
    });

    it('odd bodies are 400s with a code, never a 5xx', async () => {
      const bodies = [
        { model: 'gpt-4o-mini' },
        { model: 'gpt-4o-mini', input: [] },
        { model: 'gpt-4o-mini', input: [{ role: 'user', content: 5 }] },
        { model: 'gpt-4o-mini', input: [{ role: 'user', content: [null] }] },
        { model: 'gpt-4o-mini', input: [{ role: 'tool', content: 'x' }] },
        { model: 'gpt-4o-mini', input: [{ type: 'function_call', name: 'f' }] },
        { model: 'gpt-4o-mini', input: [{ type: 'function_call_output' }] },
        { model: 'gpt-4o-mini', input: 'x', tools: [{ type: 'function' }] },
        { model: 'gpt-4o-mini', input: 'x', tool_choice: null },
        { model: 'gpt-4o-mini', input: 'x', previous_response_id: 7 },
        { model: 'gpt-4o-mini', input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'f' }] }] },
      ];
      for (const body of bodies) {
        const res = await fetch(`${s.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.ok(((await res.json()) as { error: { code: string } }).error.code, JSON.stringify(body));
      }
    });

    it('a fault mid-stream ends with error and response.failed; the partial answer is in the ledger', async () => {
      s.fake.queue({ kind: 'reset-after', chunks: 3 });
      const res = await fetch(`${s.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', input: 'Say hello', stream: true }),
      });
      const text = await res.text();
      const types = [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);
      assert.deepEqual(types.slice(-2), ['error', 'response.failed']);
      const row = await s.usageRow(res.headers.get('x-request-id')!);
      assert.equal(row.status, 'partial');
      assert.equal(row.protocol, 'responses');
    });
  });
}
