import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromAnthropicMessage, toAnthropicRequest } from '../../providers/anthropic/translate.js';
import { type ChatCompletion, NATIVE_REQUEST } from '../../providers/types.js';
import { anthropicMessageJson, toAnthropicMessage, toStopReason } from './from-internal.js';
import type { MessagesRequest } from './schemas.js';
import { toInternalRequest } from './to-internal.js';

/**
 * Messages requests and answers ↔ the internal format, golden examples in the shapes of
 * https://docs.anthropic.com/en/api/messages (system blocks, images, documents, tool_use / tool_result,
 * thinking blocks with signatures).
 */

// Blocks carry fields the schema lets through without naming them (additionalProperties).
const request = (over: Record<string, unknown>): MessagesRequest =>
  ({
    model: 'gpt-4o-mini',
    max_tokens: 100,
    messages: [{ role: 'user', content: 'Hi' }],
    ...over,
  }) as MessagesRequest;

describe('Messages request → internal', () => {
  it('system blocks, stop_sequences, sampling, metadata and max_tokens', () => {
    const internal = toInternalRequest(
      request({
        system: [
          { type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } },
          { type: 'text', text: 'Answer in French.' },
        ],
        stop_sequences: ['\n\nHuman:'],
        temperature: 0.2,
        top_p: 0.8,
        top_k: 40,
        metadata: { user_id: 'u-1' },
      }),
      {},
    );
    assert.deepEqual(internal.messages[0], { role: 'system', content: 'Be brief.\nAnswer in French.' });
    assert.deepEqual(internal.stop, ['\n\nHuman:']);
    assert.equal(internal.temperature, 0.2);
    assert.equal(internal.top_p, 0.8);
    assert.equal(internal.top_k, 40);
    assert.equal(internal.user, 'u-1');
    assert.equal(internal.max_tokens, 100);
    assert.equal(internal.stream, undefined);
  });

  it('text turns, as a string or as text blocks, reach the upstream as text; an empty user turn is dropped', () => {
    const internal = toInternalRequest(
      request({
        system: 'Be brief.',
        messages: [
          { role: 'user', content: '' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: '' },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'sunny' }] },
              { type: 'text', text: 'First.', cache_control: { type: 'ephemeral' } },
              { type: 'text', text: 'Second.' },
            ],
          },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Read this:' },
              { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'The notes.' } },
            ],
          },
        ],
      }),
      {},
    );
    assert.deepEqual(internal.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: '' },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'sunny' },
      { role: 'user', content: 'First.\nSecond.' },
      { role: 'user', content: 'Read this:\nThe notes.' },
    ]);
  });

  it('image (base64 and url) and document blocks become image_url and file parts', () => {
    const internal = toInternalRequest(
      request({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBOR' } },
              { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
              { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBER' } },
              { type: 'text', text: 'What are these?' },
            ],
          },
        ],
      }),
      {},
    );
    assert.deepEqual(internal.messages[0]!.content, [
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR' } },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
      { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBER' } },
      { type: 'text', text: 'What are these?' },
    ]);
  });

  it('tool_use and tool_result round trip; an error result says so; tool_choice and parallel use', () => {
    const internal = toInternalRequest(
      request({
        tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object' } }],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
        messages: [
          { role: 'user', content: 'Weather?' },
          {
            role: 'assistant',
            content: [
              { type: 'text', text: 'Looking.' },
              { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
            ],
          },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'no data', is_error: true }],
          },
        ],
      }),
      {},
    );
    assert.deepEqual(internal.tools, [
      {
        type: 'function',
        function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object' } },
      },
    ]);
    assert.equal(internal.tool_choice, 'required');
    assert.equal(internal.parallel_tool_calls, false);
    assert.deepEqual(internal.messages.slice(1), [
      {
        role: 'assistant',
        content: 'Looking.',
        tool_calls: [
          {
            id: 'toolu_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'Error: no data' },
    ]);
    const named = toInternalRequest(
      request({ tools: [{ name: 'f' }], tool_choice: { type: 'tool', name: 'f' } }),
      {},
    );
    assert.deepEqual(named.tool_choice, { type: 'function', function: { name: 'f' } });
  });

  it('thinking: the budget becomes a reasoning effort; earlier thinking blocks keep their signatures', () => {
    const internal = toInternalRequest(
      request({
        thinking: { type: 'enabled', budget_tokens: 4000 },
        messages: [
          { role: 'user', content: 'Q' },
          {
            role: 'assistant',
            content: [
              { type: 'thinking', thinking: 'Step 1', signature: 'sig-abc' },
              { type: 'redacted_thinking', data: 'ENC' },
              { type: 'text', text: 'A' },
            ],
          },
          { role: 'user', content: 'Q2' },
        ],
      }),
      {},
    );
    assert.equal(internal.reasoning_effort, 'medium');
    assert.deepEqual(internal.messages[1], {
      role: 'assistant',
      content: 'A',
      thinking_blocks: [
        { type: 'thinking', thinking: 'Step 1', signature: 'sig-abc' },
        { type: 'redacted_thinking', data: 'ENC' },
      ],
      reasoning_content: 'Step 1',
    });
    // …and an Anthropic provider sends them back first, unchanged (internal → Anthropic).
    const back = toAnthropicRequest({ ...internal, model: 'claude' });
    assert.deepEqual(back.messages[1], {
      role: 'assistant',
      content: [
        { type: 'thinking', thinking: 'Step 1', signature: 'sig-abc' },
        { type: 'redacted_thinking', data: 'ENC' },
        { type: 'text', text: 'A' },
      ],
    });
  });

  it('server tools and unknown blocks are refused with a 400 for non-Anthropic models', () => {
    assert.throws(
      () => toInternalRequest(request({ tools: [{ name: 'web_search', type: 'web_search_20250305' }] }), {}),
      (err: { status?: number; options?: { param?: string } }) =>
        err.status === 400 && err.options?.param === 'tools[0].type',
    );
    assert.throws(
      () =>
        toInternalRequest(
          request({ messages: [{ role: 'user', content: [{ type: 'container_upload', file_id: 'f' }] }] }),
          {},
        ),
      (err: { status?: number }) => err.status === 400,
    );
  });

  it('keeps the client’s body and only the allow-listed headers for a pass-through', () => {
    const body = request({ stream: true });
    const internal = toInternalRequest(body, {
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'x',
      'x-api-key': 'ck-client-secret',
      authorization: 'Bearer ck-client-secret',
    });
    assert.equal(internal[NATIVE_REQUEST]!.body, body);
    assert.deepEqual(internal[NATIVE_REQUEST]!.headers, {
      'anthropic-version': '2023-06-01',
      'anthropic-beta': 'x',
    });
    assert.equal(JSON.stringify(internal).includes('ck-client-secret'), false);
    assert.deepEqual(internal.stream_options, { include_usage: true });
  });
});

describe('internal answer → Messages', () => {
  const completion = (
    message: ChatCompletion['choices'][0]['message'],
    finish: 'stop' | 'length' | 'tool_calls',
  ) =>
    ({
      id: 'chatcmpl-9',
      object: 'chat.completion',
      created: 1,
      model: 'gpt-4o-mini',
      choices: [{ index: 0, message, finish_reason: finish }],
      usage: { prompt_tokens: 12, completion_tokens: 4, total_tokens: 16 },
    }) satisfies ChatCompletion;

  it('text, tool_use (arguments parsed) and usage; the model is the one the client named', () => {
    const message = toAnthropicMessage(
      completion(
        {
          role: 'assistant',
          content: 'Sure.',
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
        },
        'tool_calls',
      ),
      'my-alias',
    );
    assert.deepEqual(message, {
      id: 'msg_chatcmpl9',
      type: 'message',
      role: 'assistant',
      model: 'my-alias',
      content: [
        { type: 'text', text: 'Sure.' },
        { type: 'tool_use', id: 'call_1', name: 'f', input: { a: 1 } },
      ],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 12, output_tokens: 4 },
    });
  });

  it('the answer sent is the translated message as JSON, whatever the upstream answered', () => {
    const answers: ChatCompletion[] = [
      completion({ role: 'assistant', content: 'Hi "there" \\ \u2028 é 😀 \ud800' }, 'stop'),
      completion({ role: 'assistant', content: '' }, 'length'),
      completion({ role: 'assistant', content: null }, 'stop'),
      completion(
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        'tool_calls',
      ),
      completion({ role: 'assistant', content: 'Yes.', reasoning_content: 'Because.' }, 'stop'),
      { ...completion({ role: 'assistant', content: 'x' }, 'stop'), id: 'msg_01"A', usage: undefined },
      { ...completion({ role: 'assistant', content: 'x' }, 'stop'), choices: [] },
      {
        ...completion({ role: 'assistant', content: 'x' }, 'stop'),
        usage: { prompt_tokens: Number.NaN, completion_tokens: 1, total_tokens: 1 },
      },
      completion({ role: 'assistant', content: [{ type: 'text', text: 'parts' }] } as never, 'stop'),
    ];
    for (const answer of answers) {
      const json = anthropicMessageJson(answer, 'my "alias"');
      assert.equal(json, JSON.stringify(toAnthropicMessage(answer, 'my "alias"')));
    }
  });

  it('maps stop reasons: stop → end_turn, length → max_tokens, tool_calls → tool_use', () => {
    assert.equal(toStopReason('stop'), 'end_turn');
    assert.equal(toStopReason('length'), 'max_tokens');
    assert.equal(toStopReason('tool_calls'), 'tool_use');
    assert.equal(toStopReason('content_filter'), 'refusal');
    assert.equal(toStopReason(null), 'end_turn');
  });

  it('thinking survives Anthropic → internal → Anthropic, signature included', () => {
    const anthropic = {
      id: 'msg_1',
      type: 'message' as const,
      role: 'assistant' as const,
      model: 'claude',
      content: [
        { type: 'thinking', thinking: 'Because…', signature: 'EqQBCgIYAhIM' },
        { type: 'text', text: '42' },
      ],
      stop_reason: 'end_turn',
      usage: { input_tokens: 3, output_tokens: 5 },
    };
    const internal = fromAnthropicMessage(anthropic);
    assert.equal(internal.choices[0]!.message.reasoning_content, 'Because…');
    const message = toAnthropicMessage(internal, 'claude');
    assert.deepEqual(message.content, anthropic.content);
  });
});
