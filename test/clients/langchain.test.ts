import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  AIMessage,
  type AIMessageChunk,
  HumanMessage,
  SystemMessage,
  ToolMessage,
} from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { z } from 'zod';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/** LangChain's ChatOpenAI pointed at Colloquy, which points at the fake upstream. */

const REPLY = 'Hello from the fake upstream, streaming word by word.';

const getWeather = tool(async ({ location }) => `It is 21 °C in ${location}.`, {
  name: 'get_weather',
  description: 'The weather in a city',
  schema: z.object({ location: z.string().describe('a city') }),
});

describe('LangChain ChatOpenAI against Colloquy', () => {
  let s: ChatStack;
  let model: ChatOpenAI;
  const lastUpstreamBody = () => s.fake.requests.at(-1)!.body;

  before(async () => {
    s = await startChatStack({ env: { UPSTREAM_RETRIES: '2' } });
    model = new ChatOpenAI({
      model: 'gpt-4o-mini',
      apiKey: s.apiKey,
      configuration: { baseURL: `${s.url}/v1` },
      maxRetries: 0,
    });
  });
  after(async () => {
    await s?.close();
  });

  it('invoke', async () => {
    const message = await model.invoke([new SystemMessage('Be brief.'), new HumanMessage('Say hello')]);
    assert.ok(message instanceof AIMessage);
    assert.equal(message.content, REPLY);
    assert.ok(message.usage_metadata && message.usage_metadata.output_tokens > 0);
    assert.equal(message.response_metadata.finish_reason, 'stop');
    const sent = lastUpstreamBody();
    assert.equal(sent.model, 'gpt-4o-mini');
    assert.deepEqual(sent.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Say hello' },
    ]);
  });

  it('stream: chunks reassemble the reply, with usage', async () => {
    const stream = await model.stream('Say hello');
    let text = '';
    let count = 0;
    let whole: AIMessageChunk | undefined;
    for await (const chunk of stream) {
      count++;
      text += typeof chunk.content === 'string' ? chunk.content : '';
      whole = whole ? whole.concat(chunk) : chunk;
    }
    assert.equal(text, REPLY);
    assert.ok(count > 5, 'streamed, not buffered');
    assert.ok(whole?.usage_metadata && whole.usage_metadata.total_tokens > 0);
    assert.equal(lastUpstreamBody().stream, true);
  });

  it('batch', async () => {
    const answers = await model.batch(['one', 'two', 'three']);
    assert.equal(answers.length, 3);
    for (const answer of answers) assert.equal(answer.content, REPLY);
  });

  it('multi-part content', async () => {
    const message = await model.invoke([
      new HumanMessage({
        content: [
          { type: 'text', text: 'What is in this image?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
        ],
      }),
    ]);
    assert.equal(message.content, REPLY);
    const sent = lastUpstreamBody().messages as { content: { type: string }[] }[];
    assert.deepEqual(
      sent[0]?.content.map((p) => p.type),
      ['text', 'image_url'],
    );
  });

  it('bindTools → tool_calls, then the tool result gets an answer', async () => {
    const withTools = model.bindTools([getWeather]);
    const question = new HumanMessage('Weather in Paris?');
    const first = await withTools.invoke([question]);
    assert.equal(first.tool_calls?.length, 1);
    const call = first.tool_calls![0]!;
    assert.equal(call.name, 'get_weather');
    assert.deepEqual(call.args, { location: 'Paris' });
    assert.equal(
      (lastUpstreamBody().tools as { function: { name: string } }[])[0]?.function.name,
      'get_weather',
    );

    const result = await getWeather.invoke(call);
    assert.ok(result instanceof ToolMessage);
    const second = await withTools.invoke([question, first, result]);
    assert.equal(second.content, REPLY);
    const sent = lastUpstreamBody().messages as { role: string; tool_call_id?: string }[];
    assert.deepEqual(
      sent.map((m) => m.role),
      ['user', 'assistant', 'tool'],
    );
    assert.equal(sent[2]?.tool_call_id, call.id);
  });

  it('bindTools while streaming: tool call chunks add up', async () => {
    const stream = await model
      .bindTools([getWeather], { tool_choice: 'get_weather' })
      .stream('Weather in Paris?');
    let whole: AIMessageChunk | undefined;
    for await (const chunk of stream) whole = whole ? whole.concat(chunk) : chunk;
    assert.equal(whole?.tool_calls?.[0]?.name, 'get_weather');
    assert.deepEqual(whole?.tool_calls?.[0]?.args, { location: 'Paris' });
  });

  it('withStructuredOutput (function calling)', async () => {
    const structured = model.withStructuredOutput(z.object({ location: z.string() }), {
      name: 'get_weather',
      method: 'functionCalling',
    });
    const answer = await structured.invoke('Where?');
    assert.deepEqual(answer, { location: 'Paris' });
  });

  it('withStructuredOutput (JSON schema)', async () => {
    s.fake.set({ reply: '{"city":"Paris","temperature":21}' });
    try {
      const structured = model.withStructuredOutput(z.object({ city: z.string(), temperature: z.number() }), {
        name: 'weather',
        method: 'jsonSchema',
      });
      const answer = await structured.invoke('Weather in Paris as JSON');
      assert.deepEqual(answer, { city: 'Paris', temperature: 21 });
      assert.equal((lastUpstreamBody().response_format as { type: string }).type, 'json_schema');
    } finally {
      s.fake.set({ reply: REPLY });
    }
  });

  it('an upstream 404 is an error with the upstream message', async () => {
    const missing = new ChatOpenAI({
      model: 'no-such-model',
      apiKey: s.apiKey,
      configuration: { baseURL: `${s.url}/v1` },
      maxRetries: 0,
    });
    await assert.rejects(missing.invoke('x'), /The model `no-such-model` does not exist/);
  });

  it('a bad key is an authentication error', async () => {
    const bad = new ChatOpenAI({
      model: 'gpt-4o-mini',
      apiKey: 'not-a-key',
      configuration: { baseURL: `${s.url}/v1` },
      maxRetries: 0,
    });
    await assert.rejects(bad.invoke('x'), (err: unknown) => {
      assert.equal((err as { status?: number }).status, 401);
      return true;
    });
  });

  it('a mid-stream failure is thrown by the stream, not a silent truncation', async () => {
    s.fake.queue({ kind: 'error-event', afterChunks: 2 });
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of await model.stream('Say hello')) text += String(chunk.content);
    });
    assert.ok(text.length < REPLY.length && REPLY.startsWith(text), `partial: ${text}`);
  });
});
