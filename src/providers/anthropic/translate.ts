/**
 * Pure translation between Colloquy's internal format (OpenAI chat completions) and Anthropic's Messages
 * API: requests one way, whole answers and streamed events the other. No I/O here; `provider.ts` does it.
 */
import { JsonShapeError, parseBoundedJson } from '../../core/json-shape.js';
import { ProviderError } from '../errors.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  ChunkDelta,
  ContentPart,
  FinishReason,
  ThinkingBlock,
  ToolCall,
  Usage,
} from '../types.js';

/** Anthropic requires `max_tokens`; OpenAI clients often omit it. */
export const DEFAULT_MAX_TOKENS = 4096;

// ---------------------------------------------------------------------------------------------------------
// Anthropic wire types (only what Colloquy reads or writes)
// ---------------------------------------------------------------------------------------------------------

export type AnthropicImageSource =
  | { type: 'base64'; media_type: string; data: string }
  | { type: 'url'; url: string };

export type AnthropicRequestBlock =
  | { type: 'text'; text: string }
  | { type: 'image'; source: AnthropicImageSource }
  | {
      type: 'document';
      source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string };
    }
  | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> }
  | ThinkingBlock
  | {
      type: 'tool_result';
      tool_use_id: string;
      content?: string | ({ type: 'text'; text: string } | { type: 'image'; source: AnthropicImageSource })[];
    };

export interface AnthropicMessageParam {
  role: 'user' | 'assistant';
  content: string | AnthropicRequestBlock[];
}

export interface AnthropicTool {
  name: string;
  description?: string;
  input_schema: unknown;
}

export type AnthropicToolChoice =
  | { type: 'auto'; disable_parallel_tool_use?: boolean }
  | { type: 'any'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }
  | { type: 'none' };

export interface AnthropicRequest {
  model: string;
  messages: AnthropicMessageParam[];
  max_tokens: number;
  system?: string;
  temperature?: number;
  top_p?: number;
  stop_sequences?: string[];
  tools?: AnthropicTool[];
  tool_choice?: AnthropicToolChoice;
  metadata?: { user_id: string };
  stream?: boolean;
  top_k?: number;
  thinking?: unknown;
}

export interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
  [key: string]: unknown;
}

export type AnthropicResponseBlock =
  | { type: 'text'; text: string; [key: string]: unknown }
  | { type: 'tool_use'; id: string; name: string; input: unknown }
  | { type: string; [key: string]: unknown }; // thinking, redacted_thinking, server_tool_use, …

export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: AnthropicResponseBlock[];
  stop_reason: string | null;
  stop_sequence?: string | null;
  usage?: AnthropicUsage;
}

export interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string };
  request_id?: string;
}

export type AnthropicStreamEvent =
  | { type: 'message_start'; message: AnthropicMessage }
  | { type: 'content_block_start'; index: number; content_block: AnthropicResponseBlock }
  | {
      type: 'content_block_delta';
      index: number;
      delta: { type: string; text?: string; partial_json?: string; [key: string]: unknown };
    }
  | { type: 'content_block_stop'; index: number }
  | {
      type: 'message_delta';
      delta: { stop_reason?: string | null; stop_sequence?: string | null };
      usage?: AnthropicUsage;
    }
  | { type: 'message_stop' }
  | { type: 'ping' }
  | { type: 'error'; error: { type: string; message: string } };

// ---------------------------------------------------------------------------------------------------------
// Request: OpenAI → Anthropic
// ---------------------------------------------------------------------------------------------------------

const invalid = (provider: string, message: string, param: string | null = null) =>
  new ProviderError(message, {
    provider,
    status: 400,
    code: 'invalid_request',
    type: 'invalid_request_error',
    param,
    retryable: false,
  });

/** The text of a message's content: a string, or its text (and refusal) parts joined. */
function contentText(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part) =>
      part.type === 'text' ? (part.text ?? '') : part.type === 'refusal' ? String(part.refusal ?? '') : '',
    )
    .join('');
}

const DATA_URL = /^data:([^;,]+)((?:;[^;,]*)*?);base64,(.*)$/s;

function imageBlock(provider: string, url: string, param: string): AnthropicRequestBlock {
  if (url.startsWith('data:')) {
    const match = DATA_URL.exec(url);
    if (!match)
      throw invalid(provider, 'image_url data URLs must be base64-encoded (data:<type>;base64,…)', param);
    return { type: 'image', source: { type: 'base64', media_type: match[1]!, data: match[3]! } };
  }
  if (/^https?:\/\//i.test(url)) return { type: 'image', source: { type: 'url', url } };
  throw invalid(provider, 'image_url must be an http(s) URL or a base64 data URL', param);
}

/** OpenAI `file` parts carrying a PDF become Anthropic `document` blocks. */
function fileBlock(provider: string, part: ContentPart, param: string): AnthropicRequestBlock {
  const file = part.file as { file_data?: unknown } | undefined;
  const data = typeof file?.file_data === 'string' ? DATA_URL.exec(file.file_data) : null;
  if (!data)
    throw invalid(
      provider,
      'file parts must carry base64 file_data (uploaded file ids are not supported)',
      param,
    );
  return { type: 'document', source: { type: 'base64', media_type: data[1]!, data: data[3]! } };
}

function contentBlocks(
  provider: string,
  content: ChatMessage['content'],
  param: string,
): AnthropicRequestBlock[] {
  if (content == null) return [];
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : [];
  if (!Array.isArray(content))
    throw invalid(provider, 'content must be a string or an array of parts', param);
  const blocks: AnthropicRequestBlock[] = [];
  content.forEach((part, i) => {
    const where = `${param}[${i}]`;
    switch (part?.type) {
      case 'text':
        // Anthropic rejects empty text blocks.
        if (part.text) blocks.push({ type: 'text', text: part.text });
        break;
      case 'refusal':
        if (part.refusal) blocks.push({ type: 'text', text: String(part.refusal) });
        break;
      case 'image_url': {
        const url = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url;
        if (typeof url !== 'string') throw invalid(provider, 'image_url parts need an image_url.url', where);
        blocks.push(imageBlock(provider, url, `${where}.image_url.url`));
        break;
      }
      case 'file':
        blocks.push(fileBlock(provider, part, `${where}.file`));
        break;
      default:
        throw invalid(
          provider,
          `content parts of type '${String(part?.type)}' are not supported by Anthropic models`,
          where,
        );
    }
  });
  return blocks;
}

function parseArguments(provider: string, call: ToolCall, param: string): Record<string, unknown> {
  const text = call.function?.arguments ?? '';
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    // Bounded like a body: the arguments are client JSON inside a string, forwarded re-serialised.
    parsed = parseBoundedJson(text);
  } catch (err) {
    if (err instanceof JsonShapeError) throw invalid(provider, `tool call arguments: ${err.message}`, param);
    throw invalid(provider, 'tool call arguments must be a JSON object', param);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalid(provider, 'tool call arguments must be a JSON object', param);
  }
  return parsed as Record<string, unknown>;
}

/** A tool result's content: its text as a string, or its text and image parts; none when it is empty. */
function toolResult(
  provider: string,
  message: ChatMessage,
  toolUseId: string,
  param: string,
): AnthropicRequestBlock {
  const block: AnthropicRequestBlock = { type: 'tool_result', tool_use_id: toolUseId };
  if (typeof message.content === 'string') {
    if (message.content) block.content = message.content;
    return block;
  }
  const parts = contentBlocks(provider, message.content, param).filter(
    (b): b is Extract<AnthropicRequestBlock, { type: 'text' | 'image' }> =>
      b.type === 'text' || b.type === 'image',
  );
  if (parts.length)
    block.content = parts.every((b) => b.type === 'text') ? parts.map((b) => b.text).join('') : parts;
  return block;
}

function toolChoice(choice: unknown): AnthropicToolChoice | undefined {
  if (choice == null) return undefined;
  if (choice === 'auto') return { type: 'auto' };
  if (choice === 'none') return { type: 'none' };
  if (choice === 'required') return { type: 'any' };
  const named = choice as { type?: string; function?: { name?: string } };
  if (named.type === 'function' && typeof named.function?.name === 'string') {
    return { type: 'tool', name: named.function.name };
  }
  return undefined;
}

/**
 * Builds the Messages API body. System and developer messages (wherever they are) become the top-level
 * `system`; tool results become user turns of `tool_result` blocks; consecutive turns of one role are
 * merged, since Anthropic requires user and assistant to alternate. Throws a 400 ProviderError for what
 * Anthropic cannot express (n > 1, audio parts, non-JSON tool arguments…).
 */
export function toAnthropicRequest(body: ChatCompletionRequest, provider = 'anthropic'): AnthropicRequest {
  if (body.n != null && body.n > 1)
    throw invalid(provider, 'n > 1 is not supported by Anthropic models', 'n');
  if (!Array.isArray(body.messages)) throw invalid(provider, 'messages must be an array', 'messages');

  const system: string[] = [];
  const turns: { role: 'user' | 'assistant'; blocks: AnthropicRequestBlock[] }[] = [];
  const push = (role: 'user' | 'assistant', blocks: AnthropicRequestBlock[]) => {
    if (!blocks.length) return;
    const last = turns.at(-1);
    if (last?.role === role) last.blocks.push(...blocks);
    else turns.push({ role, blocks: [...blocks] });
  };

  body.messages.forEach((message, i) => {
    const param = `messages[${i}]`;
    switch (message.role) {
      case 'system':
      case 'developer': {
        const text = contentText(message.content);
        if (text) system.push(text);
        break;
      }
      case 'user':
        push('user', contentBlocks(provider, message.content, `${param}.content`));
        break;
      case 'assistant': {
        // Thinking comes first and goes back exactly as it came, signature included: Anthropic checks it.
        const blocks: AnthropicRequestBlock[] = [...(message.thinking_blocks ?? [])];
        blocks.push(...contentBlocks(provider, message.content, `${param}.content`));
        (message.tool_calls ?? []).forEach((call, j) => {
          blocks.push({
            type: 'tool_use',
            id: call.id,
            name: call.function.name,
            input: parseArguments(provider, call, `${param}.tool_calls[${j}].function.arguments`),
          });
        });
        push('assistant', blocks);
        break;
      }
      case 'tool':
        if (typeof message.tool_call_id !== 'string') {
          throw invalid(provider, 'tool messages need a tool_call_id', `${param}.tool_call_id`);
        }
        push('user', [toolResult(provider, message, message.tool_call_id, `${param}.content`)]);
        break;
      default:
        throw invalid(provider, `unknown message role '${String(message.role)}'`, `${param}.role`);
    }
  });

  // A trailing assistant turn is a prefill, which Anthropic rejects when it ends with whitespace.
  const last = turns.at(-1);
  const lastBlock = last?.role === 'assistant' ? last.blocks.at(-1) : undefined;
  if (lastBlock?.type === 'text') lastBlock.text = lastBlock.text.trimEnd();

  const messages: AnthropicMessageParam[] = turns.map(({ role, blocks }) => ({
    role,
    // A lone text block is sent as a plain string, the form Anthropic's own examples use.
    content: blocks.length === 1 && blocks[0]!.type === 'text' ? blocks[0]!.text : blocks,
  }));

  const request: AnthropicRequest = {
    model: body.model,
    messages,
    max_tokens: body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_MAX_TOKENS,
  };
  if (system.length) request.system = system.join('\n\n');
  // OpenAI accepts temperatures up to 2, Anthropic up to 1.
  if (typeof body.temperature === 'number') request.temperature = Math.min(1, Math.max(0, body.temperature));
  if (typeof body.top_p === 'number') request.top_p = body.top_p;
  if (typeof body.top_k === 'number') request.top_k = body.top_k;
  if (body.thinking && typeof body.thinking === 'object') request.thinking = body.thinking;
  const stops = (typeof body.stop === 'string' ? [body.stop] : (body.stop ?? [])).filter((s) => s !== '');
  if (stops.length) request.stop_sequences = stops;
  if (body.tools?.length) {
    request.tools = body.tools.map((tool) => ({
      name: tool.function.name,
      ...(tool.function.description ? { description: tool.function.description } : {}),
      input_schema: tool.function.parameters ?? { type: 'object', properties: {} },
    }));
    let choice = toolChoice(body.tool_choice);
    if (body.parallel_tool_calls === false && choice?.type !== 'none') {
      choice = { ...(choice ?? { type: 'auto' }), disable_parallel_tool_use: true } as AnthropicToolChoice;
    }
    if (choice) request.tool_choice = choice;
  }
  if (typeof body.user === 'string' && body.user) request.metadata = { user_id: body.user };
  if (body.stream) request.stream = true;
  return request;
}

// ---------------------------------------------------------------------------------------------------------
// Answers: Anthropic → OpenAI
// ---------------------------------------------------------------------------------------------------------

export function toFinishReason(stopReason: string | null | undefined): FinishReason {
  switch (stopReason) {
    case 'end_turn':
    case 'stop_sequence':
    case 'pause_turn':
      return 'stop';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    case null:
    case undefined:
      return null;
    default:
      return 'stop';
  }
}

/** Prompt tokens include cached ones (read and written), as OpenAI counts them. */
export function toUsage(usage: AnthropicUsage | undefined): Usage {
  const prompt =
    (usage?.input_tokens ?? 0) +
    (usage?.cache_read_input_tokens ?? 0) +
    (usage?.cache_creation_input_tokens ?? 0);
  const completion = usage?.output_tokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A thinking or redacted-thinking block as the OpenAI format carries it (LiteLLM's `thinking_blocks`). */
function thinkingBlock(block: AnthropicResponseBlock): ThinkingBlock | undefined {
  if (block.type === 'thinking' && typeof block.thinking === 'string') {
    return typeof block.signature === 'string'
      ? { type: 'thinking', thinking: block.thinking, signature: block.signature }
      : { type: 'thinking', thinking: block.thinking };
  }
  if (block.type === 'redacted_thinking' && typeof block.data === 'string')
    return { type: 'redacted_thinking', data: block.data };
  return undefined;
}

export function fromAnthropicMessage(message: AnthropicMessage, created = nowSeconds()): ChatCompletion {
  let text = '';
  const toolCalls: ToolCall[] = [];
  const thinking: ThinkingBlock[] = [];
  for (const block of message.content ?? []) {
    const thought = thinkingBlock(block);
    if (thought) thinking.push(thought);
    else if (block.type === 'text' && typeof block.text === 'string') text += block.text;
    else if (block.type === 'tool_use') {
      const use = block as { id: string; name: string; input: unknown };
      toolCalls.push({
        id: use.id,
        type: 'function',
        function: { name: use.name, arguments: JSON.stringify(use.input ?? {}) },
      });
    }
  }
  return {
    id: message.id,
    object: 'chat.completion',
    created,
    model: message.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (toolCalls.length ? null : ''),
          ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
          refusal: null,
          ...(thinking.length
            ? {
                reasoning_content: thinking.map((b) => (b.type === 'thinking' ? b.thinking : '')).join(''),
                thinking_blocks: thinking,
              }
            : {}),
        },
        finish_reason: toFinishReason(message.stop_reason) ?? 'stop',
        logprobs: null,
      },
    ],
    usage: toUsage(message.usage),
  };
}

/** A mid-stream `error` event: overloaded and internal errors may succeed on another attempt. */
export function streamError(
  provider: string,
  error: { type?: string; message?: string } | undefined,
  when = 'mid-stream',
): ProviderError {
  const type = typeof error?.type === 'string' ? error.type : 'api_error';
  return new ProviderError(`upstream ${provider} failed ${when}: ${error?.message ?? type}`, {
    provider,
    status: 502,
    code: type,
    type: 'server_error',
    retryable: type === 'overloaded_error' || type === 'api_error',
    kind: 'upstream',
  });
}

/**
 * Turns Anthropic stream events into OpenAI chunks, one event at a time. The role is announced on the first
 * chunk that carries something (not at `message_start`), so an upstream that accepts and fails at once
 * fails before the first chunk, while the attempt can still be retried. `message_stop` ends with a usage
 * chunk (`choices: []`), always; whoever relays the stream decides whether the client asked for it.
 */
export class AnthropicStreamTranslator {
  #id = '';
  #model: string;
  readonly #created: number;
  #usage: AnthropicUsage = {};
  #roleSent = false;
  #finished = false;
  #stopped = false;
  /** Content block index → OpenAI tool call index, for the client tool calls of this message. */
  readonly #tools = new Map<number, number>();

  constructor(
    private readonly provider = 'anthropic',
    options: { model?: string; id?: string; created?: number } = {},
  ) {
    this.#model = options.model ?? '';
    this.#id = options.id ?? '';
    this.#created = options.created ?? nowSeconds();
  }

  /** Whether `message_stop` was seen: the stream ended properly. */
  get done(): boolean {
    return this.#stopped;
  }

  get usage(): Usage {
    return toUsage(this.#usage);
  }

  push(event: AnthropicStreamEvent): ChatCompletionChunk[] {
    switch (event.type) {
      case 'message_start':
        this.#id = event.message?.id ?? this.#id;
        this.#model = event.message?.model ?? this.#model;
        this.#mergeUsage(event.message?.usage);
        return [];
      case 'content_block_start': {
        const block = event.content_block;
        if (block?.type === 'text' && typeof block.text === 'string' && block.text) {
          return [this.#chunk({ content: block.text })];
        }
        if (block?.type === 'tool_use') {
          const index = this.#tools.size;
          this.#tools.set(event.index, index);
          const use = block as { id: string; name: string; input?: unknown };
          const args = use.input && Object.keys(use.input).length ? JSON.stringify(use.input) : '';
          return [
            this.#chunk({
              tool_calls: [
                { index, id: use.id, type: 'function', function: { name: use.name, arguments: args } },
              ],
            }),
          ];
        }
        if (block?.type === 'thinking' && typeof block.thinking === 'string' && block.thinking) {
          return [this.#chunk({ reasoning_content: block.thinking })];
        }
        if (block?.type === 'redacted_thinking' && typeof block.data === 'string') {
          return [this.#chunk({ thinking_blocks: [{ type: 'redacted_thinking', data: block.data }] })];
        }
        return []; // server tools and their results have no chat-completions equivalent
      }
      case 'content_block_delta': {
        const delta = event.delta;
        if (delta?.type === 'text_delta' && delta.text) return [this.#chunk({ content: delta.text })];
        if (delta?.type === 'input_json_delta' && delta.partial_json) {
          const index = this.#tools.get(event.index);
          if (index === undefined) return []; // a server tool's input
          return [this.#chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] })];
        }
        if (delta?.type === 'thinking_delta' && typeof delta.thinking === 'string' && delta.thinking) {
          return [this.#chunk({ reasoning_content: delta.thinking })];
        }
        if (delta?.type === 'signature_delta' && typeof delta.signature === 'string') {
          // The signature closes its thinking block (LiteLLM: a thinking block with empty text and the signature).
          return [
            this.#chunk({
              thinking_blocks: [{ type: 'thinking', thinking: '', signature: delta.signature }],
            }),
          ];
        }
        return [];
      }
      case 'message_delta': {
        this.#mergeUsage(event.usage);
        const reason = toFinishReason(event.delta?.stop_reason);
        if (!reason || this.#finished) return [];
        this.#finished = true;
        return [this.#chunk({}, reason)];
      }
      case 'message_stop': {
        if (this.#stopped) return [];
        this.#stopped = true;
        const chunks: ChatCompletionChunk[] = [];
        if (!this.#finished) {
          this.#finished = true;
          chunks.push(this.#chunk({}, 'stop'));
        }
        chunks.push({ ...this.#base(), choices: [], usage: this.usage });
        return chunks;
      }
      case 'error':
        throw streamError(this.provider, event.error);
      default:
        return []; // ping, content_block_stop, and event types added later
    }
  }

  /** A chunk that says nothing (no choices, no usage): the carrier of a relayed event that has no translation. */
  emptyChunk(): ChatCompletionChunk {
    return { ...this.#base(), choices: [] };
  }

  #mergeUsage(usage: AnthropicUsage | undefined) {
    if (!usage) return;
    for (const key of [
      'input_tokens',
      'output_tokens',
      'cache_creation_input_tokens',
      'cache_read_input_tokens',
    ] as const) {
      const value = usage[key];
      if (typeof value === 'number') this.#usage[key] = value;
    }
  }

  #base() {
    return {
      id: this.#id,
      object: 'chat.completion.chunk' as const,
      created: this.#created,
      model: this.#model,
    };
  }

  #chunk(delta: ChunkDelta, finish: FinishReason = null): ChatCompletionChunk {
    if (!this.#roleSent) {
      this.#roleSent = true;
      delta = { role: 'assistant', ...delta };
    }
    return { ...this.#base(), choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] };
  }
}
