import { ProviderError } from '../errors.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  ChunkDelta,
  FinishReason,
  ToolCall,
  Usage,
} from '../types.js';

/**
 * Bedrock's Converse API (one shape for every Bedrock chat model) from and to the OpenAI chat-completions
 * format. Wire format: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
 */

export type ConverseContentBlock =
  | { text: string }
  | { image: { format: string; source: { bytes: string } } }
  | { toolUse: { toolUseId: string; name: string; input: unknown } }
  | {
      toolResult: {
        toolUseId: string;
        content: ({ text: string } | { image: { format: string; source: { bytes: string } } })[];
        status?: 'success' | 'error';
      };
    }
  | Record<string, unknown>;

export interface ConverseMessage {
  role: 'user' | 'assistant';
  content: ConverseContentBlock[];
}

export interface ConverseRequest {
  messages: ConverseMessage[];
  system?: { text: string }[];
  inferenceConfig?: { maxTokens?: number; temperature?: number; topP?: number; stopSequences?: string[] };
  toolConfig?: {
    tools: { toolSpec: { name: string; description?: string; inputSchema: { json: unknown } } }[];
    toolChoice?:
      | { auto: Record<string, never> }
      | { any: Record<string, never> }
      | { tool: { name: string } };
  };
}

export interface ConverseUsage {
  inputTokens?: number;
  outputTokens?: number;
  totalTokens?: number;
  cacheReadInputTokens?: number;
  cacheWriteInputTokens?: number;
}

export interface ConverseResponse {
  output?: { message?: { role?: string; content?: ConverseContentBlock[] } };
  stopReason?: string;
  usage?: ConverseUsage;
}

const invalid = (provider: string, message: string, param: string | null = null) =>
  new ProviderError(message, {
    provider,
    status: 400,
    code: 'invalid_request',
    type: 'invalid_request_error',
    param,
    retryable: false,
  });

const DATA_URL = /^data:image\/([a-z]+)(?:;[^;,]*)*;base64,(.*)$/s;
const IMAGE_FORMATS = new Set(['png', 'jpeg', 'gif', 'webp']);

/** Converse takes image bytes only (or S3 locations): a base64 data URL becomes `image.source.bytes`. */
function imageBlock(provider: string, url: string, param: string): ConverseContentBlock {
  const match = DATA_URL.exec(url);
  const format = match?.[1] === 'jpg' ? 'jpeg' : match?.[1];
  if (!match || !format || !IMAGE_FORMATS.has(format))
    throw invalid(
      provider,
      'Bedrock models take images as base64 data URLs (data:image/png|jpeg|gif|webp;base64,…), not links',
      param,
    );
  return { image: { format, source: { bytes: match[2]! } } };
}

function contentBlocks(
  provider: string,
  content: ChatMessage['content'],
  param: string,
): ConverseContentBlock[] {
  if (content == null) return [];
  if (typeof content === 'string') return content ? [{ text: content }] : [];
  if (!Array.isArray(content))
    throw invalid(provider, 'content must be a string or an array of parts', param);
  const blocks: ConverseContentBlock[] = [];
  content.forEach((part, i) => {
    const where = `${param}[${i}]`;
    if (part?.type === 'text') {
      // Converse rejects blank text blocks.
      if (part.text) blocks.push({ text: part.text });
    } else if (part?.type === 'refusal') {
      if (part.refusal) blocks.push({ text: String(part.refusal) });
    } else if (part?.type === 'image_url') {
      const url = typeof part.image_url === 'string' ? part.image_url : part.image_url?.url;
      if (typeof url !== 'string') throw invalid(provider, 'image_url parts need an image_url.url', where);
      blocks.push(imageBlock(provider, url, `${where}.image_url.url`));
    } else {
      throw invalid(
        provider,
        `content parts of type '${String(part?.type)}' are not supported by Bedrock models`,
        where,
      );
    }
  });
  return blocks;
}

function textOf(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((p) => (p.type === 'text' ? (p.text ?? '') : '')).join('');
}

function parseArguments(provider: string, call: ToolCall, param: string): Record<string, unknown> {
  const text = call.function?.arguments ?? '';
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid(provider, 'tool call arguments must be a JSON object', param);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw invalid(provider, 'tool call arguments must be a JSON object', param);
  return parsed as Record<string, unknown>;
}

function toolChoice(
  provider: string,
  choice: unknown,
): NonNullable<ConverseRequest['toolConfig']>['toolChoice'] {
  if (choice == null || choice === 'auto') return { auto: {} };
  if (choice === 'required') return { any: {} };
  const named = choice as { type?: string; function?: { name?: string } };
  if (named.type === 'function' && typeof named.function?.name === 'string')
    return { tool: { name: named.function.name } };
  throw invalid(provider, 'tool_choice must be auto, required, none or a named function', 'tool_choice');
}

/**
 * Builds the Converse body. System and developer messages become `system`; tool results become user turns of
 * `toolResult` blocks carrying the client's tool call id as `toolUseId` (so ids stay what the client saw);
 * consecutive turns of one role are merged, since Converse requires user and assistant to alternate.
 * `tool_choice: "none"` drops the tools: Converse has no such choice.
 */
export function toConverseRequest(body: ChatCompletionRequest, provider = 'bedrock'): ConverseRequest {
  if (body.n != null && body.n > 1) throw invalid(provider, 'n > 1 is not supported by Bedrock models', 'n');
  if (!Array.isArray(body.messages)) throw invalid(provider, 'messages must be an array', 'messages');
  const system: { text: string }[] = [];
  const messages: ConverseMessage[] = [];
  const push = (role: 'user' | 'assistant', blocks: ConverseContentBlock[]) => {
    if (!blocks.length) return;
    const last = messages.at(-1);
    if (last?.role === role) last.content.push(...blocks);
    else messages.push({ role, content: [...blocks] });
  };
  body.messages.forEach((message, i) => {
    const param = `messages[${i}]`;
    switch (message.role) {
      case 'system':
      case 'developer': {
        const text = textOf(message.content);
        if (text) system.push({ text });
        break;
      }
      case 'user':
        push('user', contentBlocks(provider, message.content, `${param}.content`));
        break;
      case 'assistant': {
        const blocks = contentBlocks(provider, message.content, `${param}.content`);
        (message.tool_calls ?? []).forEach((call, j) => {
          blocks.push({
            toolUse: {
              toolUseId: call.id,
              name: call.function.name,
              input: parseArguments(provider, call, `${param}.tool_calls[${j}].function.arguments`),
            },
          });
        });
        push('assistant', blocks);
        break;
      }
      case 'tool': {
        if (typeof message.tool_call_id !== 'string')
          throw invalid(provider, 'tool messages need a tool_call_id', `${param}.tool_call_id`);
        const content = contentBlocks(provider, message.content, `${param}.content`) as {
          text: string;
        }[];
        push('user', [{ toolResult: { toolUseId: message.tool_call_id, content } }]);
        break;
      }
      default:
        throw invalid(provider, `unknown message role '${String(message.role)}'`, `${param}.role`);
    }
  });
  const request: ConverseRequest = { messages };
  if (system.length) request.system = system;
  const inference: NonNullable<ConverseRequest['inferenceConfig']> = {};
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (typeof maxTokens === 'number') inference.maxTokens = maxTokens;
  if (typeof body.temperature === 'number')
    inference.temperature = Math.min(1, Math.max(0, body.temperature));
  if (typeof body.top_p === 'number') inference.topP = body.top_p;
  const stops = (typeof body.stop === 'string' ? [body.stop] : (body.stop ?? [])).filter((s) => s !== '');
  if (stops.length) inference.stopSequences = stops;
  if (Object.keys(inference).length) request.inferenceConfig = inference;
  if (body.tools?.length && body.tool_choice !== 'none') {
    request.toolConfig = {
      tools: body.tools.map((tool) => ({
        toolSpec: {
          name: tool.function.name,
          ...(tool.function.description ? { description: tool.function.description } : {}),
          inputSchema: { json: tool.function.parameters ?? { type: 'object', properties: {} } },
        },
      })),
      toolChoice: toolChoice(provider, body.tool_choice),
    };
  }
  return request;
}

/** Converse's `stopReason` as an OpenAI finish reason. */
export function toFinishReason(stopReason: string | undefined): FinishReason {
  switch (stopReason) {
    case 'tool_use':
      return 'tool_calls';
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'guardrail_intervened':
    case 'content_filtered':
      return 'content_filter';
    case undefined:
      return null;
    default:
      return 'stop'; // end_turn, stop_sequence
  }
}

/** Cached prompt tokens count as prompt tokens, as OpenAI counts them. */
export function toUsage(usage: ConverseUsage | undefined): Usage {
  const prompt =
    (usage?.inputTokens ?? 0) + (usage?.cacheReadInputTokens ?? 0) + (usage?.cacheWriteInputTokens ?? 0);
  const completion = usage?.outputTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * A guardrail or content filter that blocked the exchange: 400 `content_filtered`, the code Azure's filter
 * gets, with the guardrail's own message (what it was configured to say) — not a 502, and never retried.
 */
export function contentFiltered(provider: string, stopReason: string, text: string): ProviderError {
  const said = text ? `: ${text.slice(0, 300)}` : '';
  return new ProviderError(
    `the request was blocked by upstream ${provider} (${stopReason})${said}; change the prompt, do not retry it`,
    {
      provider,
      status: 400,
      code: 'content_filtered',
      type: 'invalid_request_error',
      param: 'messages',
      retryable: false,
      kind: 'upstream',
    },
  );
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * A Converse answer as a chat completion. A guardrail intervention is an error (see contentFiltered):
 * its text is the guardrail's canned answer, not the model's.
 */
export function fromConverseResponse(
  provider: string,
  response: ConverseResponse,
  model: string,
  id: string,
  created = nowSeconds(),
): ChatCompletion {
  let text = '';
  const toolCalls: ToolCall[] = [];
  for (const block of response.output?.message?.content ?? []) {
    if (typeof (block as { text?: unknown }).text === 'string') text += (block as { text: string }).text;
    const use = (block as { toolUse?: { toolUseId: string; name: string; input?: unknown } }).toolUse;
    if (use)
      toolCalls.push({
        id: use.toolUseId,
        type: 'function',
        function: { name: use.name, arguments: JSON.stringify(use.input ?? {}) },
      });
  }
  const finish = toFinishReason(response.stopReason) ?? 'stop';
  if (finish === 'content_filter') throw contentFiltered(provider, response.stopReason!, text);
  return {
    id,
    object: 'chat.completion',
    created,
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (toolCalls.length ? null : ''),
          ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
          refusal: null,
        },
        finish_reason: finish,
        logprobs: null,
      },
    ],
    usage: toUsage(response.usage),
  };
}

/** ConverseStream's events, by `:event-type`, with their JSON payloads. */
export type ConverseStreamEvent =
  | { type: 'messageStart'; body: { role?: string } }
  | {
      type: 'contentBlockStart';
      body: { contentBlockIndex?: number; start?: { toolUse?: { toolUseId: string; name: string } } };
    }
  | {
      type: 'contentBlockDelta';
      body: { contentBlockIndex?: number; delta?: { text?: string; toolUse?: { input?: string } } };
    }
  | { type: 'contentBlockStop'; body: { contentBlockIndex?: number } }
  | { type: 'messageStop'; body: { stopReason?: string } }
  | { type: 'metadata'; body: { usage?: ConverseUsage } }
  | { type: string; body: Record<string, unknown> };

/**
 * ConverseStream events as OpenAI chunks, one event at a time: a state machine over messageStart,
 * contentBlockStart (a tool call's id and name), contentBlockDelta (text, or a tool call's input as partial
 * JSON), contentBlockStop, messageStop (the finish reason) and metadata (usage, after messageStop). The
 * role goes on the first chunk that carries something, so a stream that fails at once fails before any
 * chunk, while the attempt can still be retried or fall back.
 */
export class ConverseStreamTranslator {
  readonly #id: string;
  readonly #model: string;
  readonly #created: number;
  #usage: ConverseUsage | undefined;
  #roleSent = false;
  #finished = false;
  #done = false;
  /** Content block index → OpenAI tool call index. */
  readonly #tools = new Map<number, number>();

  constructor(options: { model: string; id: string; created?: number }) {
    this.#model = options.model;
    this.#id = options.id;
    this.#created = options.created ?? nowSeconds();
  }

  /** Whether the stream ended properly (metadata after messageStop). */
  get done(): boolean {
    return this.#done;
  }

  /** Whether messageStop was seen: a stream closed after it (without metadata) still ended properly. */
  get finished(): boolean {
    return this.#finished;
  }

  push(event: ConverseStreamEvent): ChatCompletionChunk[] {
    const body = event.body as Record<string, never>;
    switch (event.type) {
      case 'contentBlockStart': {
        const use = (body as { start?: { toolUse?: { toolUseId: string; name: string } } }).start?.toolUse;
        if (!use) return [];
        const index = this.#tools.size;
        this.#tools.set((body as { contentBlockIndex?: number }).contentBlockIndex ?? index, index);
        return [
          this.#chunk({
            tool_calls: [
              { index, id: use.toolUseId, type: 'function', function: { name: use.name, arguments: '' } },
            ],
          }),
        ];
      }
      case 'contentBlockDelta': {
        const { contentBlockIndex, delta } = body as {
          contentBlockIndex?: number;
          delta?: { text?: string; toolUse?: { input?: string } };
        };
        if (typeof delta?.text === 'string' && delta.text) return [this.#chunk({ content: delta.text })];
        const input = delta?.toolUse?.input;
        if (typeof input === 'string' && input) {
          const index = this.#tools.get(contentBlockIndex ?? -1);
          if (index === undefined) return [];
          return [this.#chunk({ tool_calls: [{ index, function: { arguments: input } }] })];
        }
        return []; // reasoning content has no chat-completions equivalent
      }
      case 'messageStop': {
        if (this.#finished) return [];
        this.#finished = true;
        const reason = toFinishReason((body as { stopReason?: string }).stopReason) ?? 'stop';
        return [this.#chunk({}, reason)];
      }
      case 'metadata': {
        this.#usage = (body as { usage?: ConverseUsage }).usage ?? this.#usage;
        return this.end();
      }
      default:
        return []; // messageStart, contentBlockStop, and events added later
    }
  }

  /** The closing usage chunk (`choices: []`), once; whoever relays the stream decides whether to send it. */
  end(): ChatCompletionChunk[] {
    if (this.#done) return [];
    this.#done = true;
    return [
      {
        id: this.#id,
        object: 'chat.completion.chunk',
        created: this.#created,
        model: this.#model,
        choices: [],
        usage: toUsage(this.#usage),
      },
    ];
  }

  #chunk(delta: ChunkDelta, finish: FinishReason = null): ChatCompletionChunk {
    if (!this.#roleSent) {
      this.#roleSent = true;
      delta = { role: 'assistant', ...delta };
    }
    return {
      id: this.#id,
      object: 'chat.completion.chunk',
      created: this.#created,
      model: this.#model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    };
  }
}
