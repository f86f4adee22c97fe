import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../core/errors.js';
import type { ChatCompletion } from '../../providers/types.js';
import { fromCompletion } from './from-internal.js';
import { type ResponsesRequest, toInternalRequest } from './to-internal.js';

/**
 * Request and response shapes from https://platform.openai.com/docs/api-reference/responses/create and
 * /responses/object (the function-calling guide's round trip: function_call, then function_call_output).
 */

describe('a Responses request onto the internal chat request', () => {
  it('string input, instructions and the sampling settings', () => {
    const request = toInternalRequest({
      model: 'gpt-4o-mini',
      instructions: 'Be brief.',
      input: 'Hello',
      max_output_tokens: 100,
      temperature: 0.2,
      top_p: 0.9,
      user: 'u-1',
      reasoning: { effort: 'low' },
      stream: true,
    });
    assert.deepEqual(request.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello' },
    ]);
    assert.equal(request.max_completion_tokens, 100);
    assert.equal(request.temperature, 0.2);
    assert.equal(request.top_p, 0.9);
    assert.equal(request.user, 'u-1');
    assert.equal(request.reasoning_effort, 'low');
    assert.deepEqual(request.stream_options, { include_usage: true });
  });

  it('item list: input_text and input_image parts, a function call round trip', () => {
    const request = toInternalRequest({
      model: 'm',
      input: [
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'Weather here?' },
            { type: 'input_image', image_url: 'data:image/png;base64,AAA=', detail: 'low' },
          ],
        },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Checking.' }] },
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_1', output: '{"temp":20}' },
        { type: 'reasoning', id: 'rs_1', summary: [] },
      ],
    });
    assert.deepEqual(request.messages, [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Weather here?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAA=', detail: 'low' } },
        ],
      },
      {
        role: 'assistant',
        content: [{ type: 'text', text: 'Checking.' }],
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":20}' },
    ]);
  });

  it('flat function tools, tool_choice, and text.format json_schema', () => {
    const request = toInternalRequest({
      model: 'm',
      input: 'x',
      tools: [
        { type: 'function', name: 'f', description: 'd', parameters: { type: 'object' }, strict: true },
      ],
      tool_choice: { type: 'function', name: 'f' },
      text: { format: { type: 'json_schema', name: 'out', schema: { type: 'object' }, strict: true } },
    });
    assert.deepEqual(request.tools, [
      {
        type: 'function',
        function: { name: 'f', description: 'd', parameters: { type: 'object' }, strict: true },
      },
    ]);
    assert.deepEqual(request.tool_choice, { type: 'function', function: { name: 'f' } });
    assert.deepEqual(request.response_format, {
      type: 'json_schema',
      json_schema: { name: 'out', schema: { type: 'object' }, strict: true },
    });
  });

  it('history (previous_response_id) comes before the new input', () => {
    const request = toInternalRequest({ model: 'm', input: 'and now?' }, [
      { type: 'message', role: 'user', content: 'first' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'one' }] },
    ]);
    assert.deepEqual(
      request.messages.map((m) => m.role),
      ['user', 'assistant', 'user'],
    );
  });

  it('what cannot be translated is a 400 naming the field, never dropped', () => {
    const cases: [ResponsesRequest, string][] = [
      [{ model: 'm', input: 'x', tools: [{ type: 'web_search_preview' }] }, 'tools[0].type'],
      [{ model: 'm', input: [{ type: 'file_search_call' }] }, 'input[0].type'],
      [
        { model: 'm', input: [{ role: 'user', content: [{ type: 'input_file' }] }] },
        'input[0].content[0].type',
      ],
      [{ model: 'm', input: [] }, 'input'],
      [{ model: 'm', input: 'x', tool_choice: { type: 'web_search' } }, 'tool_choice'],
    ];
    for (const [body, param] of cases) {
      assert.throws(
        () => toInternalRequest(body),
        (err) => err instanceof AppError && err.status === 400 && err.options.param === param,
        param,
      );
    }
  });
});

describe('a chat completion as a Responses response object', () => {
  const shell = { id: 'resp_1', createdAt: 7, request: { model: 'gpt-4o-mini', input: 'x', store: false } };
  const completion = (
    message: ChatCompletion['choices'][0]['message'],
    finish: 'stop' | 'length' | 'tool_calls',
  ) =>
    ({
      id: 'c',
      object: 'chat.completion',
      created: 0,
      model: 'm',
      choices: [{ index: 0, message, finish_reason: finish }],
    }) as ChatCompletion;
  const usage = { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 };

  it('text: one message item with output_text; usage in input/output tokens', () => {
    const r = fromCompletion(completion({ role: 'assistant', content: 'Hi' }, 'stop'), shell, usage);
    assert.equal(r.object, 'response');
    assert.equal(r.status, 'completed');
    assert.equal(r.output_text, 'Hi');
    assert.equal(r.output[0]!.type, 'message');
    assert.deepEqual([r.usage!.input_tokens, r.usage!.output_tokens, r.usage!.total_tokens], [4, 2, 6]);
    assert.equal(r.store, false);
  });

  it('tool calls: function_call items with call_id, name and arguments', () => {
    const r = fromCompletion(
      completion(
        {
          role: 'assistant',
          content: null,
          tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
        },
        'tool_calls',
      ),
      shell,
      usage,
    );
    assert.deepEqual(r.output, [
      {
        type: 'function_call',
        id: r.output[0]!.id,
        call_id: 'call_9',
        name: 'f',
        arguments: '{"a":1}',
        status: 'completed',
      },
    ]);
  });

  it('length: status incomplete with incomplete_details max_output_tokens', () => {
    const r = fromCompletion(completion({ role: 'assistant', content: 'cut' }, 'length'), shell, usage);
    assert.equal(r.status, 'incomplete');
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
  });
});
