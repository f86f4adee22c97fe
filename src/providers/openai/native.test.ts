import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openAiNativeProtocols } from '../registry.js';
import { nativeCompletion, nativePayload } from './native.js';

/**
 * The pass-through's reading of OpenAI's own answers, for the ledger and guardrails: the response object of
 * https://platform.openai.com/docs/api-reference/responses/object and the text completion of
 * https://platform.openai.com/docs/api-reference/completions/object.
 */
describe('OpenAI pass-through (Responses, legacy completions)', () => {
  it('what an openai provider passes through by default: Responses only on OpenAI’s own API', () => {
    assert.deepEqual(openAiNativeProtocols('https://api.openai.com/v1'), ['responses', 'completions']);
    assert.deepEqual(openAiNativeProtocols('http://vllm:8000/v1'), ['completions']);
    assert.deepEqual(openAiNativeProtocols('http://litellm:4000/v1', ['responses']), ['responses']);
  });

  it('a response with a function call reads as tool_calls with its usage; incomplete as length', () => {
    const response = {
      id: 'resp_1',
      object: 'response',
      status: 'completed',
      model: 'gpt-4.1',
      output: [
        {
          type: 'function_call',
          id: 'fc_1',
          call_id: 'call_abc',
          name: 'get_weather',
          arguments: '{"location":"Paris"}',
          status: 'completed',
        },
      ],
      usage: { input_tokens: 10, output_tokens: 5, total_tokens: 15 },
    };
    const { completion, native } = nativeCompletion('oai', 'responses', JSON.stringify(response), 'gpt-4.1');
    assert.deepEqual(native, response);
    assert.equal(completion.choices[0]!.finish_reason, 'tool_calls');
    assert.deepEqual(completion.choices[0]!.message.tool_calls, [
      {
        id: 'call_abc',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"location":"Paris"}' },
      },
    ]);
    assert.deepEqual(completion.usage, { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
    const cut = { ...response, status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
    const read = nativeCompletion('oai', 'responses', JSON.stringify(cut), 'gpt-4.1').completion;
    assert.equal(read.choices[0]!.finish_reason, 'length');
  });

  it('a legacy completion reads choice by choice; a stream always asks for usage', () => {
    const text = JSON.stringify({
      id: 'cmpl-1',
      object: 'text_completion',
      created: 1,
      model: 'gpt-3.5-turbo-instruct',
      choices: [
        { text: 'a', index: 0, logprobs: null, finish_reason: 'stop' },
        { text: 'b', index: 1, logprobs: null, finish_reason: 'length' },
      ],
    });
    const { completion } = nativeCompletion('oai', 'completions', text, 'm');
    assert.deepEqual(
      completion.choices.map((c) => [c.message.content, c.finish_reason]),
      [
        ['a', 'stop'],
        ['b', 'length'],
      ],
    );
    assert.throws(() => nativeCompletion('oai', 'completions', '<html>', 'm'), /not JSON/);
    assert.deepEqual(
      nativePayload('completions', { prompt: 'x', stream_options: { include_usage: false } }, 'm', true),
      {
        prompt: 'x',
        model: 'm',
        stream: true,
        stream_options: { include_usage: true },
      },
    );
  });
});
