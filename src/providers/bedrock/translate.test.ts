import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProviderError } from '../errors.js';
import {
  type ConverseStreamEvent,
  ConverseStreamTranslator,
  fromConverseResponse,
  toConverseRequest,
  toFinishReason,
} from './translate.js';

/**
 * The Converse mapping, from the shapes in AWS's references:
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html (request, ContentBlock,
 * ToolConfiguration, ToolChoice, the response and its stopReason values) and
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html (the events).
 */

const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

describe('toConverseRequest', () => {
  it('system and developer messages become `system`; images become bytes; consecutive turns merge', () => {
    const request = toConverseRequest({
      model: 'amazon.nova-lite-v1:0',
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in French.' }] },
        { role: 'user', content: 'Look:' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'what is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
          ],
        },
      ],
    });
    assert.deepEqual(request.system, [{ text: 'You are terse.' }, { text: 'Answer in French.' }]);
    assert.deepEqual(request.messages, [
      {
        role: 'user',
        content: [
          { text: 'Look:' },
          { text: 'what is this?' },
          { image: { format: 'png', source: { bytes: PNG } } },
        ],
      },
    ]);
    assert.equal(request.inferenceConfig, undefined);
    assert.equal(request.toolConfig, undefined);
  });

  it('an image link, an audio part, non-JSON tool arguments and n > 1 are 400s naming the field', () => {
    const fails = (body: Parameters<typeof toConverseRequest>[0], param: string) =>
      assert.throws(
        () => toConverseRequest(body),
        (err: ProviderError) =>
          err instanceof ProviderError && err.details.status === 400 && err.details.param === param,
      );
    fails(
      {
        model: 'm',
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }],
      },
      'messages[0].content[0].image_url.url',
    );
    fails(
      { model: 'm', messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] },
      'messages[0].content[0]',
    );
    fails(
      {
        model: 'm',
        messages: [
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{oops' } }],
          },
        ],
      },
      'messages[0].tool_calls[0].function.arguments',
    );
    fails({ model: 'm', n: 2, messages: [] }, 'n');
  });

  it('tool_choice: auto → auto, required → any, a function → tool, none → no tools at all', () => {
    const tools = [{ type: 'function' as const, function: { name: 'f', parameters: { type: 'object' } } }];
    const choice = (tool_choice: unknown) =>
      toConverseRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }], tools, tool_choice })
        .toolConfig;
    assert.deepEqual(choice(undefined)?.toolChoice, { auto: {} });
    assert.deepEqual(choice('required')?.toolChoice, { any: {} });
    assert.deepEqual(choice({ type: 'function', function: { name: 'f' } })?.toolChoice, {
      tool: { name: 'f' },
    });
    assert.equal(choice('none'), undefined);
    assert.deepEqual(choice('auto')?.tools, [
      { toolSpec: { name: 'f', inputSchema: { json: { type: 'object' } } } },
    ]);
  });

  it('inferenceConfig from max_completion_tokens, temperature (clamped to 1), top_p and stop', () => {
    const request = toConverseRequest({
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      max_completion_tokens: 50,
      max_tokens: 10,
      temperature: 1.7,
      top_p: 0.5,
      stop: 'END',
    });
    assert.deepEqual(request.inferenceConfig, {
      maxTokens: 50,
      temperature: 1,
      topP: 0.5,
      stopSequences: ['END'],
    });
  });
});

describe('fromConverseResponse', () => {
  it('text and toolUse blocks, stop reason and usage (cache reads counted as prompt tokens)', () => {
    const completion = fromConverseResponse(
      'bedrock',
      {
        output: {
          message: {
            role: 'assistant',
            content: [
              { text: 'Let me check.' },
              { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Lyon' } } },
            ],
          },
        },
        stopReason: 'tool_use',
        usage: { inputTokens: 10, outputTokens: 5, totalTokens: 15, cacheReadInputTokens: 100 },
      },
      'anthropic.claude-3-5-sonnet-20240620-v1:0',
      'chatcmpl-1',
      1_700_000_000,
    );
    assert.deepEqual(completion.choices[0]?.message, {
      role: 'assistant',
      content: 'Let me check.',
      tool_calls: [
        {
          id: 'tooluse_1',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Lyon"}' },
        },
      ],
      refusal: null,
    });
    assert.equal(completion.choices[0]?.finish_reason, 'tool_calls');
    assert.deepEqual(completion.usage, { prompt_tokens: 110, completion_tokens: 5, total_tokens: 115 });
  });

  it('stop reasons map as documented; unknown future ones are a plain stop', () => {
    assert.equal(toFinishReason('end_turn'), 'stop');
    assert.equal(toFinishReason('stop_sequence'), 'stop');
    assert.equal(toFinishReason('max_tokens'), 'length');
    assert.equal(toFinishReason('model_context_window_exceeded'), 'length');
    assert.equal(toFinishReason('tool_use'), 'tool_calls');
    assert.equal(toFinishReason('guardrail_intervened'), 'content_filter');
    assert.equal(toFinishReason('content_filtered'), 'content_filter');
    assert.equal(toFinishReason('something_new'), 'stop');
  });

  it('a content_filtered answer is a 400 content_filtered', () => {
    assert.throws(
      () =>
        fromConverseResponse(
          'bedrock',
          { output: { message: { content: [{ text: 'Blocked.' }] } }, stopReason: 'content_filtered' },
          'm',
          'id',
        ),
      (err: ProviderError) => err.details.code === 'content_filtered' && err.details.status === 400,
    );
  });
});

describe('ConverseStreamTranslator: one transition at a time', () => {
  const translator = () => new ConverseStreamTranslator({ model: 'm', id: 'chatcmpl-s', created: 1 });
  const ev = (type: string, body: Record<string, unknown>) => ({ type, body }) as ConverseStreamEvent;

  it('messageStart and contentBlockStop emit nothing; the role rides on the first content chunk', () => {
    const t = translator();
    assert.deepEqual(t.push(ev('messageStart', { role: 'assistant' })), []);
    const [first] = t.push(ev('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hi' } }));
    assert.deepEqual(first?.choices[0]?.delta, { role: 'assistant', content: 'Hi' });
    const [second] = t.push(ev('contentBlockDelta', { contentBlockIndex: 0, delta: { text: ' there' } }));
    assert.deepEqual(second?.choices[0]?.delta, { content: ' there' });
    assert.deepEqual(t.push(ev('contentBlockStop', { contentBlockIndex: 0 })), []);
  });

  it('text then two tool calls: each toolUse start opens a call, its input deltas go to that call', () => {
    const t = translator();
    t.push(ev('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Checking.' } }));
    const [open1] = t.push(
      ev('contentBlockStart', { contentBlockIndex: 1, start: { toolUse: { toolUseId: 'tu_1', name: 'a' } } }),
    );
    assert.deepEqual(open1?.choices[0]?.delta.tool_calls, [
      { index: 0, id: 'tu_1', type: 'function', function: { name: 'a', arguments: '' } },
    ]);
    const [part] = t.push(
      ev('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '{"x":' } } }),
    );
    assert.deepEqual(part?.choices[0]?.delta.tool_calls, [{ index: 0, function: { arguments: '{"x":' } }]);
    t.push(
      ev('contentBlockStart', { contentBlockIndex: 2, start: { toolUse: { toolUseId: 'tu_2', name: 'b' } } }),
    );
    const [late] = t.push(
      ev('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '1}' } } }),
    );
    assert.equal(
      late?.choices[0]?.delta.tool_calls?.[0]?.index,
      0,
      'deltas follow their block, not the latest',
    );
    const [second] = t.push(
      ev('contentBlockDelta', { contentBlockIndex: 2, delta: { toolUse: { input: '{}' } } }),
    );
    assert.equal(second?.choices[0]?.delta.tool_calls?.[0]?.index, 1);
  });

  it('messageStop gives the finish reason once; metadata then closes with usage; end() adds nothing more', () => {
    const t = translator();
    const [stop] = t.push(ev('messageStop', { stopReason: 'max_tokens' }));
    assert.equal(stop?.choices[0]?.finish_reason, 'length');
    assert.equal(t.finished, true);
    assert.equal(t.done, false);
    assert.deepEqual(t.push(ev('messageStop', { stopReason: 'end_turn' })), []);
    const [usage] = t.push(ev('metadata', { usage: { inputTokens: 3, outputTokens: 4, totalTokens: 7 } }));
    assert.deepEqual(usage?.choices, []);
    assert.deepEqual(usage?.usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    assert.equal(t.done, true);
    assert.deepEqual(t.end(), []);
  });

  it('reasoning deltas and unknown events are skipped', () => {
    const t = translator();
    assert.deepEqual(
      t.push(ev('contentBlockDelta', { contentBlockIndex: 0, delta: { reasoningContent: { text: 'hmm' } } })),
      [],
    );
    assert.deepEqual(t.push(ev('somethingNew', {})), []);
  });
});
