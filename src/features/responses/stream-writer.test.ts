import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChatCompletionChunk, ChunkDelta, FinishReason } from '../../providers/types.js';
import { ResponsesStreamWriter } from './stream-writer.js';

/** Events per https://platform.openai.com/docs/api-reference/responses-streaming */

const chunk = (delta: ChunkDelta, finish: FinishReason = null, usage?: ChatCompletionChunk['usage']) =>
  ({
    id: 'c',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'm',
    choices: [{ index: 0, delta, finish_reason: finish }],
    ...(usage && { usage }),
  }) as ChatCompletionChunk;
const usageChunk = {
  id: 'c',
  object: 'chat.completion.chunk',
  created: 0,
  model: 'm',
  choices: [],
  usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
} as ChatCompletionChunk;

const writer = () =>
  new ResponsesStreamWriter({ id: 'resp_1', createdAt: 1, request: { model: 'gpt-4o-mini', input: 'hi' } });
const types = (events: { type: string }[]) => events.map((e) => e.type);

describe('the Responses stream state machine', () => {
  it('idle → open: response.created then response.in_progress, once', () => {
    const w = writer();
    const events = w.start();
    assert.deepEqual(types(events), ['response.created', 'response.in_progress']);
    assert.equal((events[0]!.response as { status: string }).status, 'in_progress');
    assert.deepEqual(w.start(), []);
  });

  it('first text: the message item and its output_text part open, then the delta', () => {
    const w = writer();
    w.start();
    const events = w.push(chunk({ role: 'assistant', content: 'Hel' }));
    assert.deepEqual(types(events), [
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
    ]);
    assert.equal(events[2]!.delta, 'Hel');
    assert.deepEqual(types(w.push(chunk({ content: 'lo' }))), ['response.output_text.delta']);
  });

  it('text then finish then usage: the part and item close, response.completed with usage and text', () => {
    const w = writer();
    w.push(chunk({ content: 'Hello' }));
    assert.deepEqual(w.push(chunk({}, 'stop')), []);
    w.push(usageChunk);
    const events = w.end();
    assert.deepEqual(types(events), [
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    assert.equal(events[0]!.text, 'Hello');
    const response = events.at(-1)!.response as {
      status: string;
      output_text: string;
      usage: { input_tokens: number; output_tokens: number; total_tokens: number };
    };
    assert.equal(response.status, 'completed');
    assert.equal(response.output_text, 'Hello');
    assert.deepEqual(
      [response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens],
      [5, 3, 8],
    );
  });

  it('text then a tool call: the message closes, a function_call item opens; arguments split across chunks', () => {
    const w = writer();
    w.push(chunk({ content: 'Let me check.' }));
    const opened = w.push(
      chunk({
        tool_calls: [
          { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } },
        ],
      }),
    );
    assert.deepEqual(types(opened), [
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
    ]);
    const item = opened[3]!.item as { type: string; call_id: string; name: string };
    assert.deepEqual([item.type, item.call_id, item.name], ['function_call', 'call_1', 'get_weather']);
    const pieces = ['{"loc', 'ation":', '"Paris"}'].flatMap((p) =>
      w.push(chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] })),
    );
    assert.deepEqual(types(pieces), Array(3).fill('response.function_call_arguments.delta'));
    assert.deepEqual(
      pieces.map((e) => e.delta),
      ['{"loc', 'ation":', '"Paris"}'],
    );
    w.push(chunk({}, 'tool_calls'));
    const end = w.end();
    assert.deepEqual(types(end), [
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    assert.equal(end[0]!.arguments, '{"location":"Paris"}');
    const output = (end.at(-1)!.response as { output: { type: string; arguments?: string }[] }).output;
    assert.deepEqual(
      output.map((o) => o.type),
      ['message', 'function_call'],
    );
    assert.equal(output[1]!.arguments, '{"location":"Paris"}');
  });

  it('parallel calls with interleaved arguments: each item gets its own deltas, both closed in order', () => {
    const w = writer();
    w.push(chunk({ tool_calls: [{ index: 0, id: 'a', function: { name: 'f', arguments: '{"x"' } }] }));
    w.push(chunk({ tool_calls: [{ index: 1, id: 'b', function: { name: 'g', arguments: '{"y"' } }] }));
    const late = w.push(chunk({ tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }));
    assert.deepEqual(types(late), ['response.function_call_arguments.delta']);
    assert.equal(late[0]!.output_index, 0);
    w.push(chunk({ tool_calls: [{ index: 1, function: { arguments: ':2}' } }] }));
    const end = w.end();
    const done = end.filter((e) => e.type === 'response.function_call_arguments.done');
    assert.deepEqual(
      done.map((e) => [e.output_index, e.arguments]),
      [
        [0, '{"x":1}'],
        [1, '{"y":2}'],
      ],
    );
  });

  it('finish length: the item is incomplete and the stream ends with response.incomplete', () => {
    const w = writer();
    w.push(chunk({ content: 'cut' }));
    w.push(chunk({}, 'length'));
    const end = w.end();
    assert.equal(end.at(-1)!.type, 'response.incomplete');
    const response = end.at(-1)!.response as {
      status: string;
      incomplete_details: { reason: string };
      output: { status: string }[];
    };
    assert.equal(response.status, 'incomplete');
    assert.deepEqual(response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(response.output[0]!.status, 'incomplete');
  });

  it('a fault mid-stream: open items closed incomplete, then error and response.failed with the partial output', () => {
    const w = writer();
    w.push(chunk({ content: 'partial ' }));
    const events = w.fail({ code: 'upstream_error', message: 'connection reset' });
    assert.deepEqual(types(events), [
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'error',
      'response.failed',
    ]);
    assert.equal(events[3]!.code, 'upstream_error');
    const failed = events.at(-1)!.response as {
      status: string;
      output_text: string;
      error: { code: string };
    };
    assert.equal(failed.status, 'failed');
    assert.equal(failed.output_text, 'partial ');
    assert.equal(failed.error.code, 'upstream_error');
    assert.equal(w.response.status, 'failed');
    assert.deepEqual(w.end(), [], 'nothing after the end');
  });

  it('a fault before any chunk still opens the response, so the client sees created, then the failure', () => {
    assert.deepEqual(types(writer().fail({ code: 'x', message: 'y' })), [
      'response.created',
      'response.in_progress',
      'error',
      'response.failed',
    ]);
  });

  it('sequence_number counts every event from 0, without gaps', () => {
    const w = writer();
    const all = [
      ...w.push(chunk({ content: 'a' })),
      ...w.push(chunk({ tool_calls: [{ index: 0, id: 'c', function: { name: 'f', arguments: '{}' } }] })),
      ...w.end(),
    ];
    assert.deepEqual(
      all.map((e) => e.sequence_number),
      all.map((_, i) => i),
    );
  });
});
