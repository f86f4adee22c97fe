/**
 * Colloquy's internal stream (chat-completion chunks) as the Responses API's streaming events
 * (https://platform.openai.com/docs/api-reference/responses-streaming), each with its `sequence_number`:
 *
 *   response.created, response.in_progress; per output item: response.output_item.added, then for a
 *   message response.content_part.added, response.output_text.delta…, response.output_text.done,
 *   response.content_part.done; for a function call response.function_call_arguments.delta…,
 *   response.function_call_arguments.done; then response.output_item.done; finally response.completed
 *   (or response.incomplete), or `error` and response.failed when the upstream fails mid-stream.
 *
 * A small state machine. A message item is open while text comes; a tool call opens a function_call item
 * (closing the message) and tool items stay open until the end, so arguments of parallel calls may come
 * interleaved, each relayed in the pieces it came in. Pure: it returns the events, the route writes them.
 */
import type { ChatCompletionChunk, FinishReason, Usage } from '../../providers/types.js';
import {
  incompleteReason,
  newItemId,
  type OutputItem,
  type ResponseObject,
  type ResponseShell,
  responseObject,
} from './from-internal.js';

export interface ResponsesEvent {
  type: string;
  sequence_number: number;
  [key: string]: unknown;
}

export const sse = (event: ResponsesEvent) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;

type MessageItem = Extract<OutputItem, { type: 'message' }>;
type CallItem = Extract<OutputItem, { type: 'function_call' }>;

export class ResponsesStreamWriter {
  #state: 'idle' | 'open' | 'ended' = 'idle';
  #sequence = 0;
  readonly #output: OutputItem[] = [];
  /** The open message item and its text so far. */
  #message: { item: MessageItem; index: number; text: string } | undefined;
  /** Open function_call items by the chat tool-call index. */
  readonly #calls = new Map<number, { item: CallItem; index: number }>();
  #finish: FinishReason = null;
  #usage: Usage | undefined;
  #final: ResponseObject | undefined;

  constructor(private readonly shell: ResponseShell) {}

  get started(): boolean {
    return this.#state !== 'idle';
  }

  get usage(): Usage | undefined {
    return this.#usage;
  }

  /** The response as it stands (final once end() or fail() ran): what is stored and recorded. */
  get response(): ResponseObject {
    return this.#final ?? this.#snapshot('in_progress');
  }

  #event(type: string, fields: Record<string, unknown>): ResponsesEvent {
    return { type, sequence_number: this.#sequence++, ...fields };
  }

  #snapshot(status: ResponseObject['status'], extra: Parameters<typeof responseObject>[1] | object = {}) {
    return responseObject(this.shell, {
      status,
      output: structuredClone(this.#output),
      usage: this.#usage,
      ...extra,
    });
  }

  start(): ResponsesEvent[] {
    if (this.#state !== 'idle') return [];
    this.#state = 'open';
    const response = this.#snapshot('in_progress');
    return [this.#event('response.created', { response }), this.#event('response.in_progress', { response })];
  }

  /** The events one chunk produces. */
  push(chunk: ChatCompletionChunk): ResponsesEvent[] {
    const events = this.start();
    if (this.#state === 'ended') return events;
    if (chunk.usage) this.#usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) return events;
    const delta = choice.delta ?? {};
    if (delta.content) events.push(...this.#text(delta.content));
    for (const call of delta.tool_calls ?? []) events.push(...this.#toolCall(call));
    if (choice.finish_reason) this.#finish = choice.finish_reason;
    return events;
  }

  #text(text: string): ResponsesEvent[] {
    const events: ResponsesEvent[] = [];
    if (!this.#message) {
      // Text after tool calls: the calls are complete, close them first.
      events.push(...this.#closeCalls('completed'));
      const item: MessageItem = {
        type: 'message',
        id: newItemId('msg'),
        status: 'in_progress',
        role: 'assistant',
        content: [],
      };
      const index = this.#output.push(item) - 1;
      this.#message = { item, index, text: '' };
      events.push(
        this.#event('response.output_item.added', { output_index: index, item: structuredClone(item) }),
        this.#event('response.content_part.added', {
          item_id: item.id,
          output_index: index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        }),
      );
    }
    const open = this.#message;
    open.text += text;
    events.push(
      this.#event('response.output_text.delta', {
        item_id: open.item.id,
        output_index: open.index,
        content_index: 0,
        delta: text,
      }),
    );
    return events;
  }

  #toolCall(call: NonNullable<ChatCompletionChunk['choices'][0]['delta']['tool_calls']>[number]) {
    const events: ResponsesEvent[] = [];
    let open = this.#calls.get(call.index);
    if (!open) {
      events.push(...this.#closeMessage('completed'));
      const item: CallItem = {
        type: 'function_call',
        id: newItemId('fc'),
        call_id: call.id ?? newItemId('fc'),
        name: call.function?.name ?? '',
        arguments: '',
        status: 'in_progress',
      };
      const index = this.#output.push(item) - 1;
      open = { item, index };
      this.#calls.set(call.index, open);
      events.push(
        this.#event('response.output_item.added', { output_index: index, item: structuredClone(item) }),
      );
    } else if (call.function?.name && !open.item.name) open.item.name = call.function.name;
    const piece = call.function?.arguments;
    if (piece) {
      open.item.arguments += piece;
      events.push(
        this.#event('response.function_call_arguments.delta', {
          item_id: open.item.id,
          output_index: open.index,
          delta: piece,
        }),
      );
    }
    return events;
  }

  #closeMessage(status: 'completed' | 'incomplete'): ResponsesEvent[] {
    const open = this.#message;
    if (!open) return [];
    this.#message = undefined;
    const part = { type: 'output_text' as const, text: open.text, annotations: [] };
    open.item.content = [part];
    open.item.status = status;
    const at = { item_id: open.item.id, output_index: open.index, content_index: 0 };
    return [
      this.#event('response.output_text.done', { ...at, text: open.text }),
      this.#event('response.content_part.done', { ...at, part }),
      this.#event('response.output_item.done', {
        output_index: open.index,
        item: structuredClone(open.item),
      }),
    ];
  }

  #closeCalls(status: 'completed' | 'incomplete'): ResponsesEvent[] {
    const events: ResponsesEvent[] = [];
    for (const { item, index } of [...this.#calls.values()].sort((a, b) => a.index - b.index)) {
      item.status = status;
      events.push(
        this.#event('response.function_call_arguments.done', {
          item_id: item.id,
          output_index: index,
          arguments: item.arguments,
        }),
        this.#event('response.output_item.done', { output_index: index, item: structuredClone(item) }),
      );
    }
    this.#calls.clear();
    return events;
  }

  /** The stream ended normally: open items closed, then response.completed or response.incomplete. */
  end(): ResponsesEvent[] {
    const events = this.start();
    if (this.#state === 'ended') return events;
    this.#state = 'ended';
    const incomplete = incompleteReason(this.#finish);
    const itemStatus = incomplete ? 'incomplete' : 'completed';
    events.push(...this.#closeByPosition(itemStatus));
    this.#final = this.#snapshot(incomplete ? 'incomplete' : 'completed', { incomplete });
    events.push(
      this.#event(incomplete ? 'response.incomplete' : 'response.completed', { response: this.#final }),
    );
    return events;
  }

  /**
   * The upstream failed after the first byte: an `error` event, then response.failed with the partial
   * output (its open items marked incomplete), so a client and the store see what was produced.
   */
  fail(error: { code: string; message: string }): ResponsesEvent[] {
    const events = this.start();
    if (this.#state === 'ended') return events;
    this.#state = 'ended';
    events.push(...this.#closeByPosition('incomplete'));
    this.#final = this.#snapshot('failed', { error });
    events.push(
      this.#event('error', { code: error.code, message: error.message, param: null }),
      this.#event('response.failed', { response: this.#final }),
    );
    return events;
  }

  /** Closes what is open in output order (a message before the calls after it, or after them). */
  #closeByPosition(status: 'completed' | 'incomplete'): ResponsesEvent[] {
    const messageIndex = this.#message?.index ?? -1;
    const firstCall = Math.min(...[...this.#calls.values()].map((c) => c.index));
    return messageIndex >= 0 && messageIndex < firstCall
      ? [...this.#closeMessage(status), ...this.#closeCalls(status)]
      : [...this.#closeCalls(status), ...this.#closeMessage(status)];
  }
}
