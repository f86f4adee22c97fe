import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { createParser } from 'eventsource-parser';
import { ProviderError } from '../errors.js';
import type { ChatCompletionChunk, ChatCompletionRequest } from '../types.js';
import {
  type AnthropicMessage,
  type AnthropicStreamEvent,
  AnthropicStreamTranslator,
  DEFAULT_MAX_TOKENS,
  fromAnthropicMessage,
  toAnthropicRequest,
  toFinishReason,
} from './translate.js';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

/** A recorded SSE stream as Anthropic sends it, parsed into its events (checking `event:` matches `type`). */
function recordedEvents(name: string): AnthropicStreamEvent[] {
  const events: AnthropicStreamEvent[] = [];
  const parser = createParser({
    onEvent: (message) => {
      const event = JSON.parse(message.data) as AnthropicStreamEvent;
      assert.equal(message.event, event.type, 'the SSE event name matches the data type');
      events.push(event);
    },
  });
  parser.feed(fixture(name));
  return events;
}

function translateAll(events: AnthropicStreamEvent[]) {
  const translator = new AnthropicStreamTranslator('anthropic', { created: 1_700_000_000 });
  const chunks: ChatCompletionChunk[] = [];
  for (const event of events) chunks.push(...translator.push(event));
  return { chunks, translator };
}

const base = (messages: ChatCompletionRequest['messages'], extra: Partial<ChatCompletionRequest> = {}) =>
  ({ model: 'claude-sonnet-4-5-20250929', messages, ...extra }) as ChatCompletionRequest;

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

describe('anthropic request translation', () => {
  it('collects system and developer messages into `system` and merges consecutive turns', () => {
    const out = toAnthropicRequest(
      base([
        { role: 'system', content: 'You are terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'user', content: 'Bonjour' },
        { role: 'user', content: [{ type: 'text', text: 'Quelle heure est-il ?' }] },
        { role: 'assistant', content: 'Midi.' },
        { role: 'system', content: 'Be polite.' },
        { role: 'user', content: 'Merci' },
      ]),
    );
    assert.equal(out.system, 'You are terse.\n\nAnswer in French.\n\nBe polite.');
    assert.deepEqual(out.messages, [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Bonjour' },
          { type: 'text', text: 'Quelle heure est-il ?' },
        ],
      },
      { role: 'assistant', content: 'Midi.' },
      { role: 'user', content: 'Merci' },
    ]);
    assert.equal(out.max_tokens, DEFAULT_MAX_TOKENS);
    assert.equal('stream' in out, false);
    assert.equal('system' in toAnthropicRequest(base([{ role: 'user', content: 'hi' }])), false);
  });

  it('turns image_url parts into base64 and url image blocks, and PDF file parts into documents', () => {
    const out = toAnthropicRequest(
      base([
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare these.' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}`, detail: 'high' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
            {
              type: 'file',
              file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0xLjQK' },
            },
          ],
        },
      ]),
    );
    assert.deepEqual(out.messages[0]!.content, [
      { type: 'text', text: 'Compare these.' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' } },
    ]);
  });

  it('maps tool calls to tool_use blocks and tool messages to one user turn of tool_result blocks', () => {
    const out = toAnthropicRequest(
      base([
        { role: 'user', content: 'Weather in SF and Zürich?' },
        {
          role: 'assistant',
          content: 'Checking both.',
          tool_calls: [
            {
              id: 'toolu_01A',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA"}' },
            },
            {
              id: 'toolu_01B',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"location":"Zürich"}' },
            },
            { id: 'toolu_01C', type: 'function', function: { name: 'get_time', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_01A', content: '15°C, fog' },
        {
          role: 'tool',
          tool_call_id: 'toolu_01B',
          content: [
            { type: 'text', text: '9°C, ' },
            { type: 'text', text: 'rain' },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_01C', content: '' },
        { role: 'user', content: 'And tomorrow?' },
      ]),
    );
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Weather in SF and Zürich?' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Checking both.' },
          {
            type: 'tool_use',
            id: 'toolu_01A',
            name: 'get_weather',
            input: { location: 'San Francisco, CA' },
          },
          { type: 'tool_use', id: 'toolu_01B', name: 'get_weather', input: { location: 'Zürich' } },
          { type: 'tool_use', id: 'toolu_01C', name: 'get_time', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_01A', content: '15°C, fog' },
          { type: 'tool_result', tool_use_id: 'toolu_01B', content: '9°C, rain' },
          { type: 'tool_result', tool_use_id: 'toolu_01C' },
          { type: 'text', text: 'And tomorrow?' },
        ],
      },
    ]);
  });

  it('drops empty content: an assistant turn of tool calls only, empty text parts', () => {
    const out = toAnthropicRequest(
      base([
        {
          role: 'user',
          content: [
            { type: 'text', text: '' },
            { type: 'text', text: 'Go' },
          ],
        },
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'run', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 't1', content: 'done' },
      ]),
    );
    assert.deepEqual(out.messages, [
      { role: 'user', content: 'Go' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'run', input: {} }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'done' }] },
    ]);
  });

  it('maps tools and every tool_choice form', () => {
    const tools: ChatCompletionRequest['tools'] = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Current weather',
          parameters: {
            type: 'object',
            properties: { location: { type: 'string' } },
            required: ['location'],
          },
        },
      },
      { type: 'function', function: { name: 'get_time' } },
    ];
    const msgs = [{ role: 'user' as const, content: 'hi' }];
    const out = toAnthropicRequest(base(msgs, { tools }));
    assert.deepEqual(out.tools, [
      {
        name: 'get_weather',
        description: 'Current weather',
        input_schema: {
          type: 'object',
          properties: { location: { type: 'string' } },
          required: ['location'],
        },
      },
      { name: 'get_time', input_schema: { type: 'object', properties: {} } },
    ]);
    assert.equal(out.tool_choice, undefined);
    const choice = (tool_choice: unknown, extra: Partial<ChatCompletionRequest> = {}) =>
      toAnthropicRequest(base(msgs, { tools, tool_choice, ...extra })).tool_choice;
    assert.deepEqual(choice('auto'), { type: 'auto' });
    assert.deepEqual(choice('none'), { type: 'none' });
    assert.deepEqual(choice('required'), { type: 'any' });
    assert.deepEqual(choice({ type: 'function', function: { name: 'get_time' } }), {
      type: 'tool',
      name: 'get_time',
    });
    assert.deepEqual(choice('required', { parallel_tool_calls: false }), {
      type: 'any',
      disable_parallel_tool_use: true,
    });
    assert.deepEqual(choice(undefined, { parallel_tool_calls: false }), {
      type: 'auto',
      disable_parallel_tool_use: true,
    });
    // No tools, no tool_choice: Anthropic rejects a tool_choice without tools.
    assert.equal(toAnthropicRequest(base(msgs, { tool_choice: 'required' })).tool_choice, undefined);
  });

  it('maps sampling parameters, limits, stop sequences, user and stream', () => {
    const msgs = [{ role: 'user' as const, content: 'hi' }];
    const out = toAnthropicRequest(
      base(msgs, {
        max_tokens: 256,
        temperature: 0.2,
        top_p: 0.9,
        stop: 'END',
        user: 'user-42',
        stream: true,
      }),
    );
    assert.deepEqual(
      { ...out, messages: undefined },
      {
        model: 'claude-sonnet-4-5-20250929',
        messages: undefined,
        max_tokens: 256,
        temperature: 0.2,
        top_p: 0.9,
        stop_sequences: ['END'],
        metadata: { user_id: 'user-42' },
        stream: true,
      },
    );
    assert.equal(
      toAnthropicRequest(base(msgs, { max_tokens: 256, max_completion_tokens: 512 })).max_tokens,
      512,
    );
    assert.equal(toAnthropicRequest(base(msgs, { max_tokens: null })).max_tokens, DEFAULT_MAX_TOKENS);
    assert.deepEqual(toAnthropicRequest(base(msgs, { stop: ['a', '', 'b'] })).stop_sequences, ['a', 'b']);
    assert.equal(toAnthropicRequest(base(msgs, { stop: null })).stop_sequences, undefined);
    assert.equal(toAnthropicRequest(base(msgs, { temperature: 1.7 })).temperature, 1);
    assert.equal(toAnthropicRequest(base(msgs, { temperature: null })).temperature, undefined);
    assert.equal(toAnthropicRequest(base(msgs, { stream: false })).stream, undefined);
  });

  it('trims trailing whitespace of an assistant prefill, which Anthropic rejects', () => {
    const out = toAnthropicRequest(
      base([
        { role: 'user', content: 'List three fruits as JSON.' },
        { role: 'assistant', content: '{"fruits": [ \n' },
      ]),
    );
    assert.deepEqual(out.messages.at(-1), { role: 'assistant', content: '{"fruits": [' });
  });

  it('rejects what Anthropic cannot express with a non-retryable 400', () => {
    const cases: [ChatCompletionRequest, string | null][] = [
      [base([{ role: 'user', content: 'hi' }], { n: 2 }), 'n'],
      [
        base([
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 't', type: 'function', function: { name: 'f', arguments: '{"a":' } }],
          },
        ]),
        'messages[0].tool_calls[0].function.arguments',
      ],
      [
        base([
          { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] },
        ]),
        'messages[0].content[0]',
      ],
      [
        base([
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'data:image/svg+xml,%3Csvg%3E' } }],
          },
        ]),
        'messages[0].content[0].image_url.url',
      ],
      [base([{ role: 'tool', content: 'x' }]), 'messages[0].tool_call_id'],
    ];
    for (const [body, param] of cases) {
      assert.throws(
        () => toAnthropicRequest(body, 'claude'),
        (err: unknown) => {
          assert.ok(err instanceof ProviderError);
          assert.equal(err.details.status, 400);
          assert.equal(err.details.provider, 'claude');
          assert.equal(err.details.param, param);
          assert.equal(err.retryable, false);
          return true;
        },
      );
    }
  });
});

describe('anthropic answer translation', () => {
  it('translates a recorded text message', () => {
    const message = JSON.parse(fixture('message-text.json')) as AnthropicMessage;
    assert.deepEqual(fromAnthropicMessage(message, 1_700_000_000), {
      id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
      object: 'chat.completion',
      created: 1_700_000_000,
      model: 'claude-sonnet-4-5-20250929',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Paris is the capital of France.', refusal: null },
          finish_reason: 'stop',
          logprobs: null,
        },
      ],
      usage: { prompt_tokens: 24, completion_tokens: 10, total_tokens: 34 },
    });
  });

  it('translates a recorded tool-use message, counting cache tokens as prompt tokens', () => {
    const message = JSON.parse(fixture('message-tool-use.json')) as AnthropicMessage;
    const completion = fromAnthropicMessage(message);
    const choice = completion.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, "I'll look up the current weather in San Francisco.");
    assert.deepEqual(choice.message.tool_calls, [
      {
        id: 'toolu_01A09q90qw90lq917835lq9',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"location":"San Francisco, CA","unit":"celsius"}' },
      },
    ]);
    assert.deepEqual(completion.usage, { prompt_tokens: 1584, completion_tokens: 72, total_tokens: 1656 });
  });

  it('gives null content for tool calls only, and skips thinking blocks', () => {
    const completion = fromAnthropicMessage({
      id: 'msg_1',
      type: 'message',
      role: 'assistant',
      model: 'claude-opus-4-1-20250805',
      content: [
        { type: 'thinking', thinking: 'hmm', signature: 'sig' },
        { type: 'tool_use', id: 'toolu_1', name: 'noop', input: {} },
      ],
      stop_reason: 'tool_use',
      usage: { input_tokens: 5, output_tokens: 7 },
    });
    assert.equal(completion.choices[0]!.message.content, null);
    assert.equal(completion.choices[0]!.message.tool_calls![0]!.function.arguments, '{}');
  });

  it('maps every stop reason', () => {
    assert.equal(toFinishReason('end_turn'), 'stop');
    assert.equal(toFinishReason('stop_sequence'), 'stop');
    assert.equal(toFinishReason('max_tokens'), 'length');
    assert.equal(toFinishReason('model_context_window_exceeded'), 'length');
    assert.equal(toFinishReason('tool_use'), 'tool_calls');
    assert.equal(toFinishReason('refusal'), 'content_filter');
    assert.equal(toFinishReason('pause_turn'), 'stop');
    assert.equal(toFinishReason(null), null);
  });
});

describe('anthropic stream translation', () => {
  it('translates a recorded text stream: role first, text deltas, finish reason, then usage', () => {
    const { chunks, translator } = translateAll(recordedEvents('stream-text.sse'));
    assert.equal(translator.done, true);
    for (const chunk of chunks) {
      assert.equal(chunk.id, 'msg_01QC4g3HwBThD4BaNtBckFDJ');
      assert.equal(chunk.model, 'claude-sonnet-4-5-20250929');
      assert.equal(chunk.object, 'chat.completion.chunk');
      assert.equal(chunk.created, 1_700_000_000);
    }
    assert.deepEqual(chunks[0]!.choices, [
      { index: 0, delta: { role: 'assistant', content: 'Bonjour' }, finish_reason: null, logprobs: null },
    ]);
    assert.deepEqual(
      chunks.slice(1, -2).map((c) => c.choices[0]!.delta),
      [
        { content: ' ! Un café ☕ et' },
        { content: " un croissant 🥐, s'il vous plaît." },
        { content: '\nÇa fait 4,50 €.' },
      ],
    );
    assert.deepEqual(chunks.at(-2)!.choices, [
      { index: 0, delta: {}, finish_reason: 'stop', logprobs: null },
    ]);
    assert.deepEqual(chunks.at(-1)!.choices, []);
    assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 21, completion_tokens: 27, total_tokens: 48 });
    assert.equal(chunks.length, 6);
  });

  it('translates a recorded tool-use stream into indexed tool call deltas', () => {
    const { chunks } = translateAll(recordedEvents('stream-tool-use.sse'));
    const deltas = chunks.filter((c) => c.choices.length).map((c) => c.choices[0]!.delta);
    assert.deepEqual(deltas[0], { role: 'assistant', content: "I'll check the weather" });
    assert.deepEqual(deltas[2], {
      tool_calls: [
        {
          index: 0,
          id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          type: 'function',
          function: { name: 'get_weather', arguments: '' },
        },
      ],
    });
    assert.deepEqual(deltas[3], {
      tool_calls: [{ index: 0, function: { arguments: '{"location": "San Fra' } }],
    });
    assert.deepEqual(deltas[6], {
      tool_calls: [
        {
          index: 1,
          id: 'toolu_01EjLPxF2ZfKfJ5rRSVxmsGa',
          type: 'function',
          function: { name: 'get_weather', arguments: '' },
        },
      ],
    });
    // Empty partial_json deltas produce no chunk.
    assert.equal(
      deltas.some((d) => d.tool_calls?.[0]?.function?.arguments === '' && !d.tool_calls[0].id),
      false,
    );
    const args = ['', ''];
    for (const d of deltas) for (const t of d.tool_calls ?? []) args[t.index] += t.function?.arguments ?? '';
    assert.deepEqual(
      args.map((a) => JSON.parse(a)),
      [
        { location: 'San Francisco, CA', unit: 'fahrenheit' },
        { location: 'Zürich, CH', unit: 'celsius' },
      ],
    );
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(chunks.at(-1)!.usage, {
      prompt_tokens: 1496,
      completion_tokens: 89,
      total_tokens: 1585,
    });
  });

  it('skips thinking blocks and maps max_tokens to length', () => {
    const { chunks } = translateAll(recordedEvents('stream-max-tokens.sse'));
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, 'One, two, three, four');
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'length');
    assert.deepEqual(chunks.at(-1)!.usage, { prompt_tokens: 14, completion_tokens: 20, total_tokens: 34 });
  });

  it('streams thinking as reasoning_content and its signature as a thinking block (LiteLLM’s convention)', () => {
    const { chunks } = translateAll(recordedEvents('stream-max-tokens.sse'));
    const reasoning = chunks.map((c) => c.choices[0]?.delta.reasoning_content ?? '').join('');
    assert.equal(reasoning, "The user wants a count. I'll start at one.");
    const blocks = chunks.flatMap((c) => c.choices[0]?.delta.thinking_blocks ?? []);
    assert.deepEqual(blocks, [
      { type: 'thinking', thinking: '', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' },
    ]);
  });

  it('throws a ProviderError on an error event, after relaying what came before', () => {
    const translator = new AnthropicStreamTranslator('anthropic');
    const events = recordedEvents('stream-error.sse');
    const chunks: ChatCompletionChunk[] = [];
    assert.throws(
      () => {
        for (const event of events) chunks.push(...translator.push(event));
      },
      (err: unknown) => {
        assert.ok(err instanceof ProviderError);
        assert.equal(err.details.status, 502);
        assert.equal(err.details.code, 'overloaded_error');
        assert.equal(err.retryable, true);
        assert.match(err.message, /Overloaded/);
        return true;
      },
    );
    assert.equal(chunks.map((c) => c.choices[0]?.delta.content).join(''), 'The answer');
    assert.equal(translator.done, false);

    const invalid = new AnthropicStreamTranslator('anthropic');
    assert.throws(
      () => invalid.push({ type: 'error', error: { type: 'invalid_request_error', message: 'bad' } }),
      (err: unknown) =>
        err instanceof ProviderError && !err.retryable && err.details.code === 'invalid_request_error',
    );
    const api = new AnthropicStreamTranslator('anthropic');
    assert.throws(
      () => api.push({ type: 'error', error: { type: 'api_error', message: 'Internal server error' } }),
      (err: unknown) => err instanceof ProviderError && err.retryable && err.details.code === 'api_error',
    );
  });

  it('is not done without message_stop, finishes when message_delta is missing, ignores server tools', () => {
    const { chunks, translator } = translateAll(recordedEvents('stream-truncated.sse'));
    assert.equal(translator.done, false);
    assert.equal(
      chunks.some((c) => c.choices[0]?.finish_reason),
      false,
    );

    const t = new AnthropicStreamTranslator('anthropic', { created: 1 });
    const out = [
      ...t.push({
        type: 'message_start',
        message: {
          id: 'msg_x',
          type: 'message',
          role: 'assistant',
          model: 'claude-sonnet-4-5-20250929',
          content: [],
          stop_reason: null,
          usage: { input_tokens: 3, output_tokens: 1 },
        },
      }),
      ...t.push({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: {} },
      }),
      ...t.push({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: '{"q":"x"}' },
      }),
      ...t.push({ type: 'content_block_stop', index: 0 }),
      ...t.push({ type: 'ping' }),
      ...t.push({ type: 'message_stop' }),
    ];
    assert.equal(t.done, true);
    assert.deepEqual(
      out.map((c) => c.choices),
      [[{ index: 0, delta: { role: 'assistant' }, finish_reason: 'stop', logprobs: null }], []],
    );
    assert.deepEqual(out[1]!.usage, { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 });
  });
});
