import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChatCompletionChunk, ChunkDelta, FinishReason } from '../../providers/types.js';
import { type MessagesEvent, MessagesStreamWriter } from './stream-writer.js';

/**
 * One test per transition of the Messages stream state machine; the expected events follow Anthropic's
 * documented stream (https://docs.anthropic.com/en/api/messages-streaming).
 */

const chunk = (delta: ChunkDelta, finish: FinishReason = null): ChatCompletionChunk => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, delta, finish_reason: finish }],
});
const usage = (prompt: number, completion: number): ChatCompletionChunk => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [],
  usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
});
const types = (events: MessagesEvent[]) =>
  events.map((e) =>
    e.type === 'content_block_delta' ? `delta:${(e.delta as { type: string }).type}@${e.index}` : e.type,
  );

/** A writer already past message_start. */
function started() {
  const writer = new MessagesStreamWriter('my-model');
  writer.push(chunk({ role: 'assistant', content: '' }));
  return writer;
}

describe('MessagesStreamWriter', () => {
  it('idle → open: the first chunk starts the message (message_start with the client’s model, then ping)', () => {
    const writer = new MessagesStreamWriter('my-model');
    const events = writer.push(chunk({ role: 'assistant', content: '' }));
    assert.deepEqual(types(events), ['message_start', 'ping']);
    const message = events[0]!.message as Record<string, unknown>;
    assert.equal(message.model, 'my-model');
    assert.equal(message.id, 'msg_chatcmpl1');
    assert.deepEqual(message.content, []);
    assert.equal(message.stop_reason, null);
  });

  it('text: the first text delta opens a text block, the next ones continue it', () => {
    const writer = started();
    const first = writer.push(chunk({ content: 'Hel' }));
    assert.deepEqual(first, [
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hel' } },
    ]);
    assert.deepEqual(writer.push(chunk({ content: 'lo' })), [
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'lo' } },
    ]);
  });

  it('thinking: reasoning opens a thinking block; its signature is a signature_delta that closes it', () => {
    const writer = started();
    assert.deepEqual(types(writer.push(chunk({ reasoning_content: 'Let me see' }))), [
      'content_block_start',
      'delta:thinking_delta@0',
    ]);
    const signed = writer.push(
      chunk({ thinking_blocks: [{ type: 'thinking', thinking: '', signature: 'sig-1' }] }),
    );
    assert.deepEqual(signed, [
      { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: 'sig-1' } },
      { type: 'content_block_stop', index: 0 },
    ]);
  });

  it('thinking → text: the thinking block is closed before the text block opens', () => {
    const writer = started();
    writer.push(chunk({ reasoning_content: 'hmm' }));
    assert.deepEqual(types(writer.push(chunk({ content: 'Answer' }))), [
      'content_block_stop',
      'content_block_start',
      'delta:text_delta@1',
    ]);
  });

  it('redacted thinking is a block of its own, opened and closed at once', () => {
    const writer = started();
    const events = writer.push(chunk({ thinking_blocks: [{ type: 'redacted_thinking', data: 'ENC' }] }));
    assert.deepEqual(events, [
      { type: 'content_block_start', index: 0, content_block: { type: 'redacted_thinking', data: 'ENC' } },
      { type: 'content_block_stop', index: 0 },
    ]);
  });

  it('tool call: its first chunk opens a tool_use block; arguments split across chunks become input_json_deltas', () => {
    const writer = started();
    writer.push(chunk({ content: 'Checking.' }));
    const open = writer.push(
      chunk({
        tool_calls: [
          { index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } },
        ],
      }),
    );
    assert.deepEqual(open, [
      { type: 'content_block_stop', index: 0 },
      {
        type: 'content_block_start',
        index: 1,
        content_block: { type: 'tool_use', id: 'call_1', name: 'get_weather', input: {} },
      },
    ]);
    const pieces = ['{"loc', 'ation": "Pa', 'ris"}'];
    const deltas = pieces.flatMap((piece) =>
      writer.push(chunk({ tool_calls: [{ index: 0, function: { arguments: piece } }] })),
    );
    assert.deepEqual(types(deltas), [
      'delta:input_json_delta@1',
      'delta:input_json_delta@1',
      'delta:input_json_delta@1',
    ]);
    const json = deltas.map((d) => (d.delta as { partial_json: string }).partial_json).join('');
    assert.deepEqual(JSON.parse(json), { location: 'Paris' });
  });

  it('a second tool call closes the first tool_use block and opens the next index', () => {
    const writer = started();
    writer.push(chunk({ tool_calls: [{ index: 0, id: 'a', function: { name: 'f', arguments: '{}' } }] }));
    const next = writer.push(
      chunk({ tool_calls: [{ index: 1, id: 'b', function: { name: 'g', arguments: '{"x":1}' } }] }),
    );
    assert.deepEqual(types(next), ['content_block_stop', 'content_block_start', 'delta:input_json_delta@1']);
    assert.equal((next[1]!.content_block as { id: string }).id, 'b');
  });

  for (const [finish, stop] of [
    ['stop', 'end_turn'],
    ['length', 'max_tokens'],
    ['tool_calls', 'tool_use'],
  ] as const) {
    it(`finish_reason ${finish} → message_delta stop_reason ${stop}, with the usage chunk’s figures`, () => {
      const writer = started();
      writer.push(chunk({ content: 'x' }));
      assert.deepEqual(writer.push(chunk({}, finish)), []);
      assert.deepEqual(writer.push(usage(11, 3)), []);
      assert.deepEqual(writer.finish(), [
        { type: 'content_block_stop', index: 0 },
        {
          type: 'message_delta',
          delta: { stop_reason: stop, stop_sequence: null },
          usage: { output_tokens: 3, input_tokens: 11 },
        },
        { type: 'message_stop' },
      ]);
    });
  }

  it('an empty answer still makes a whole message: start, ping, message_delta, message_stop', () => {
    const writer = new MessagesStreamWriter('m');
    assert.deepEqual(types(writer.finish()), ['message_start', 'ping', 'message_delta', 'message_stop']);
  });

  it('fail: an error event ends the stream; nothing follows it', () => {
    const writer = started();
    writer.push(chunk({ content: 'partial' }));
    const error = { type: 'api_error', message: 'upstream reset' };
    assert.deepEqual(writer.fail(error), [{ type: 'error', error }]);
    assert.deepEqual(writer.push(chunk({ content: 'late' })), []);
    assert.deepEqual(writer.finish(), []);
  });

  it('after message_stop nothing more is written', () => {
    const writer = started();
    writer.finish();
    assert.deepEqual(writer.push(chunk({ content: 'late' })), []);
    assert.deepEqual(writer.finish(), []);
  });
});
