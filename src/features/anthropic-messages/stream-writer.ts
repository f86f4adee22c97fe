/**
 * Colloquy's internal stream (OpenAI chat-completion chunks) as the Messages API's events, in Anthropic's
 * documented order (https://docs.anthropic.com/en/api/messages-streaming):
 *
 *   message_start, ping, then per content block: content_block_start, content_block_delta…,
 *   content_block_stop; then message_delta (stop_reason, usage) and message_stop.
 *
 * A small state machine: at most one block is open; a delta of another kind (thinking → text → tool call)
 * closes it and opens the next. Tool arguments are relayed as `input_json_delta` in the pieces they came
 * in. Pure: it returns the events, the route writes them.
 */
import type { ChatCompletionChunk, ChunkDelta, Usage } from '../../providers/types.js';
import { messageId, type StopReason, toAnthropicUsage, toStopReason } from './from-internal.js';

export interface MessagesEvent {
  type: string;
  [key: string]: unknown;
}

type BlockKind = 'text' | 'thinking' | 'tool_use';

export const sse = (event: MessagesEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

export class MessagesStreamWriter {
  #state: 'idle' | 'open' | 'ended' = 'idle';
  /** The open content block, if any. */
  #block: { index: number; kind: BlockKind } | undefined;
  #nextIndex = 0;
  /** OpenAI tool-call index → content block index. */
  readonly #tools = new Map<number, number>();
  #stop: StopReason | undefined;
  #usage: Usage | undefined;

  constructor(
    private readonly model: string,
    private readonly options: { id?: string; inputTokens?: number } = {},
  ) {}

  get started(): boolean {
    return this.#state !== 'idle';
  }

  get usage(): Usage | undefined {
    return this.#usage;
  }

  /** message_start (with what is known of the usage so far) and a ping. */
  start(id = this.options.id): MessagesEvent[] {
    if (this.#state !== 'idle') return [];
    this.#state = 'open';
    return [
      {
        type: 'message_start',
        message: {
          id: messageId(id),
          type: 'message',
          role: 'assistant',
          model: this.model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: this.options.inputTokens ?? 0, output_tokens: 0 },
        },
      },
      { type: 'ping' },
    ];
  }

  push(chunk: ChatCompletionChunk): MessagesEvent[] {
    if (this.#state === 'ended') return [];
    const out = this.start(chunk.id);
    if (chunk.usage) this.#usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) return out;
    const delta: ChunkDelta = choice.delta ?? {};
    if (delta.reasoning_content)
      out.push(...this.#delta('thinking', { type: 'thinking_delta', thinking: delta.reasoning_content }));
    for (const block of delta.thinking_blocks ?? []) {
      if (block.type === 'redacted_thinking') {
        out.push(
          ...this.#close(),
          ...this.#open('redacted_thinking', { data: block.data }),
          ...this.#close(),
        );
        continue;
      }
      // Upstreams that send thinking only as blocks: their text is the delta (never twice with reasoning_content).
      if (block.thinking && !delta.reasoning_content)
        out.push(...this.#delta('thinking', { type: 'thinking_delta', thinking: block.thinking }));
      if (block.signature) {
        // The signature ends its thinking block.
        out.push(...this.#delta('thinking', { type: 'signature_delta', signature: block.signature }));
        out.push(...this.#close());
      }
    }
    if (delta.content) out.push(...this.#delta('text', { type: 'text_delta', text: delta.content }));
    for (const call of delta.tool_calls ?? []) {
      let index = this.#tools.get(call.index);
      if (index === undefined) {
        out.push(...this.#close());
        index = this.#nextIndex;
        out.push(
          ...this.#open('tool_use', {
            id: call.id ?? `toolu_${index}`,
            name: call.function?.name ?? '',
            input: {},
          }),
        );
        this.#tools.set(call.index, index);
      }
      const args = call.function?.arguments;
      // A late piece of an earlier call (upstreams stream calls one after another; this is the exception)
      // still goes to its own block index, which is how Anthropic clients assemble blocks.
      if (args)
        out.push({
          type: 'content_block_delta',
          index,
          delta: { type: 'input_json_delta', partial_json: args },
        });
    }
    if (choice.finish_reason) this.#stop = toStopReason(choice.finish_reason);
    return out;
  }

  /** The end of a stream that ended properly: the open block closed, the stop reason and usage, message_stop. */
  finish(): MessagesEvent[] {
    if (this.#state === 'ended') return [];
    const out = [...this.start(), ...this.#close()];
    this.#state = 'ended';
    const usage = toAnthropicUsage(this.#usage);
    out.push(
      {
        type: 'message_delta',
        delta: { stop_reason: this.#stop ?? 'end_turn', stop_sequence: null },
        usage: { output_tokens: usage.output_tokens, input_tokens: usage.input_tokens },
      },
      { type: 'message_stop' },
    );
    return out;
  }

  /** A failure after the first byte: Anthropic's in-band `error` event ends the stream. */
  fail(error: { type: string; message: string }): MessagesEvent[] {
    if (this.#state === 'ended') return [];
    this.#state = 'ended';
    return [{ type: 'error', error }];
  }

  #open(type: BlockKind | 'redacted_thinking', fields: Record<string, unknown>): MessagesEvent[] {
    const index = this.#nextIndex++;
    if (type !== 'redacted_thinking') this.#block = { index, kind: type };
    else this.#block = { index, kind: 'thinking' };
    return [{ type: 'content_block_start', index, content_block: { type, ...fields } }];
  }

  #close(): MessagesEvent[] {
    if (!this.#block) return [];
    const { index } = this.#block;
    this.#block = undefined;
    return [{ type: 'content_block_stop', index }];
  }

  /** A delta for a block of `kind`: the open one if it is of that kind, else a new one. */
  #delta(kind: 'text' | 'thinking', delta: Record<string, unknown>): MessagesEvent[] {
    const out: MessagesEvent[] = [];
    if (this.#block?.kind !== kind) {
      out.push(...this.#close());
      out.push(...this.#open(kind, kind === 'text' ? { text: '' } : { thinking: '', signature: '' }));
    }
    out.push({ type: 'content_block_delta', index: this.#block!.index, delta });
    return out;
  }
}
