import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import type { Response, ResponseStreamEvent } from 'openai/resources/responses/responses';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * The Responses API × each provider family (issue 20's translation matrix), streaming and not, text and
 * tools: text, function calls, status and usage. OpenAI-format upstream: the general fake; Anthropic-format
 * upstream: Anthropic's published examples (src/providers/anthropic/fixtures, from
 * https://docs.anthropic.com/en/api/messages and /messages-streaming).
 */
const fixture = (name: string) =>
  readFileSync(new URL(`../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');
const tool = {
  type: 'function' as const,
  name: 'get_weather',
  parameters: { type: 'object', properties: { location: { type: 'string' } } },
  strict: false,
};

/** What the fixtures say the answer is: its text, tool calls and output token count. */
function expected(kind: 'text' | 'tools') {
  const message = JSON.parse(fixture(kind === 'text' ? 'message-text.json' : 'message-tool-use.json')) as {
    content: { type: string; text?: string; name?: string; input?: unknown }[];
    usage: { output_tokens: number };
  };
  return {
    text: message.content.flatMap((b) => (b.type === 'text' ? [b.text!] : [])).join(''),
    calls: message.content.flatMap((b) => (b.type === 'tool_use' ? [{ name: b.name, input: b.input }] : [])),
    outputTokens: message.usage.output_tokens,
  };
}

async function collect(stream: AsyncIterable<ResponseStreamEvent>): Promise<Response> {
  let final: Response | undefined;
  const sequence: number[] = [];
  for await (const event of stream) {
    sequence.push(event.sequence_number);
    if (event.type === 'response.completed' || event.type === 'response.incomplete') final = event.response;
  }
  assert.deepEqual(
    sequence,
    sequence.map((_, i) => i),
  );
  assert.ok(final, 'the stream ended with response.completed');
  return final;
}

describe('Responses API × Anthropic-format upstream', () => {
  let claude: ScriptedUpstream;
  let s: ChatStack;
  let client: OpenAI;
  before(async () => {
    claude = await startScriptedUpstream();
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0' },
      routing: () => ({
        providers: [{ name: 'claude', type: 'anthropic', base_url: claude.url }],
        models: [
          {
            name: 'claude-sonnet',
            deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }],
          },
        ],
      }),
    });
    client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    await claude?.close();
  });

  for (const stream of [false, true]) {
    it(`text, ${stream ? 'streaming' : 'not streaming'}: text, status completed, usage`, async () => {
      claude.handle((_req, res) =>
        stream
          ? sendSse(res, [fixture('stream-text.sse')])
          : sendJson(res, 200, JSON.parse(fixture('message-text.json'))),
      );
      const params = {
        model: 'claude-sonnet',
        instructions: 'Be brief.',
        input: 'Say hello',
        max_output_tokens: 256,
      };
      const response = stream
        ? await collect(await client.responses.create({ ...params, stream: true }))
        : await client.responses.create(params);
      assert.equal(response.status, 'completed');
      if (!stream) assert.equal(response.output_text, expected('text').text);
      else assert.ok(response.output_text.length > 0);
      assert.ok(response.usage!.input_tokens > 0 && response.usage!.output_tokens > 0);
      const upstream = claude.requests.at(-1)!.body;
      assert.equal(upstream.system, 'Be brief.');
      assert.equal(upstream.max_tokens, 256);
    });

    it(`tools, ${stream ? 'streaming' : 'not streaming'}: function_call items, arguments whole`, async () => {
      claude.handle((_req, res) =>
        stream
          ? sendSse(res, [fixture('stream-tool-use.sse')])
          : sendJson(res, 200, JSON.parse(fixture('message-tool-use.json'))),
      );
      const params = { model: 'claude-sonnet', input: 'Weather?', tools: [tool] };
      const response = stream
        ? await collect(await client.responses.create({ ...params, stream: true }))
        : await client.responses.create(params);
      assert.equal(response.status, 'completed');
      const calls = response.output.filter((o) => o.type === 'function_call');
      // The streamed example calls the tool twice (two tool_use blocks), the non-streamed one once.
      assert.equal(calls.length, stream ? 2 : 1);
      assert.equal(new Set(calls.map((c) => c.call_id)).size, calls.length, 'one item per call');
      assert.equal(calls[0]!.name, 'get_weather');
      assert.equal(typeof JSON.parse(calls[0]!.arguments), 'object');
      if (!stream) assert.deepEqual(JSON.parse(calls[0]!.arguments), expected('tools').calls[0]!.input);
      const upstreamTools = claude.requests.at(-1)!.body.tools as { name: string }[];
      assert.equal(upstreamTools[0]!.name, 'get_weather');
    });
  }
});
