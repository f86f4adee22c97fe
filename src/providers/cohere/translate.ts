import { ProviderError, protocolError } from '../errors.js';
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
 * Cohere's v2 Chat API (https://docs.cohere.com/reference/chat, https://docs.cohere.com/reference/chat-stream)
 * as the internal (OpenAI chat-completions) format. Messages and tools are close to OpenAI's; the differences:
 * `p`/`k` for top_p/top_k, `stop_sequences`, `tool_choice` REQUIRED/NONE, a `tool_plan` (the model's plan
 * before its calls, kept on the message as an extension field and sent back), `citations` (kept as an
 * extension field on the message and on stream deltas), and usage under `usage.tokens` / `billed_units`.
 */
interface CohereToolCall {
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface CohereResponse {
  id?: string;
  finish_reason?: string;
  message?: {
    role?: string;
    content?: { type?: string; text?: string }[];
    tool_plan?: string;
    tool_calls?: CohereToolCall[];
    citations?: unknown[];
  };
  usage?: CohereUsage;
}

interface CohereUsage {
  billed_units?: { input_tokens?: number; output_tokens?: number };
  tokens?: { input_tokens?: number; output_tokens?: number };
}

export function toCohereRequest(body: ChatCompletionRequest, provider: string): Record<string, unknown> {
  if (body.n != null && body.n > 1)
    throw new ProviderError('n > 1 is not supported by Cohere', {
      provider,
      status: 400,
      code: 'invalid_request',
      type: 'invalid_request_error',
      param: 'n',
      retryable: false,
    });
  const out: Record<string, unknown> = {
    model: body.model,
    messages: body.messages.map(toCohereMessage),
  };
  const set = (key: string, value: unknown) => {
    if (value !== undefined && value !== null) out[key] = value;
  };
  set('stream', body.stream);
  set('max_tokens', body.max_completion_tokens ?? body.max_tokens);
  set('temperature', body.temperature);
  set('p', body.top_p);
  set('k', body.top_k);
  set('seed', body.seed);
  set('frequency_penalty', body.frequency_penalty);
  set('presence_penalty', body.presence_penalty);
  if (body.stop != null) out.stop_sequences = Array.isArray(body.stop) ? body.stop : [body.stop];
  if (body.tools?.length) out.tools = body.tools.map((t) => ({ type: 'function', function: t.function }));
  if (body.tool_choice === 'required') out.tool_choice = 'REQUIRED';
  if (body.tool_choice === 'none') out.tool_choice = 'NONE';
  const format = body.response_format as
    | { type?: string; json_schema?: { schema?: unknown } }
    | null
    | undefined;
  if (format?.type === 'json_object') out.response_format = { type: 'json_object' };
  if (format?.type === 'json_schema')
    out.response_format = { type: 'json_object', json_schema: format.json_schema?.schema };
  // Cohere-only fields a client may send through.
  for (const key of ['documents', 'citation_options', 'safety_mode'])
    if (body[key] !== undefined) out[key] = body[key];
  return out;
}

function toCohereMessage(message: ChatMessage): Record<string, unknown> {
  switch (message.role) {
    case 'developer':
      return { role: 'system', content: message.content ?? '' };
    case 'tool':
      return { role: 'tool', tool_call_id: message.tool_call_id, content: message.content ?? '' };
    case 'assistant': {
      const out: Record<string, unknown> = { role: 'assistant' };
      if (message.content) out.content = message.content;
      if (message.tool_calls?.length) {
        out.tool_calls = message.tool_calls.map((c) => ({
          id: c.id,
          type: 'function',
          function: c.function,
        }));
        if (typeof message.tool_plan === 'string') out.tool_plan = message.tool_plan;
      }
      return out;
    }
    default:
      return { role: message.role, content: message.content ?? '' };
  }
}

export function toFinishReason(reason: string | undefined): FinishReason {
  switch (reason) {
    case 'MAX_TOKENS':
      return 'length';
    case 'TOOL_CALL':
      return 'tool_calls';
    case 'ERROR':
    case 'ERROR_TOXIC':
      return 'content_filter';
    case undefined:
      return null;
    default:
      return 'stop'; // COMPLETE, STOP_SEQUENCE
  }
}

export function toUsage(usage: CohereUsage | undefined): Usage {
  const input = usage?.tokens?.input_tokens ?? usage?.billed_units?.input_tokens ?? 0;
  const output = usage?.tokens?.output_tokens ?? usage?.billed_units?.output_tokens ?? 0;
  return { prompt_tokens: input, completion_tokens: output, total_tokens: input + output };
}

export function fromCohereResponse(
  provider: string,
  response: CohereResponse,
  model: string,
): ChatCompletion {
  const message = response?.message;
  if (!message) throw protocolError(provider, 'the answer has no message');
  const text = (message.content ?? []).map((c) => (c.type === 'text' ? (c.text ?? '') : '')).join('');
  const calls: ToolCall[] = (message.tool_calls ?? []).map((c) => ({
    id: c.id ?? '',
    type: 'function',
    function: { name: c.function?.name ?? '', arguments: c.function?.arguments ?? '' },
  }));
  return {
    id: response.id ?? '',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: text || (calls.length ? null : ''),
          ...(calls.length ? { tool_calls: calls } : {}),
          ...(message.tool_plan ? { tool_plan: message.tool_plan } : {}),
          ...(message.citations?.length ? { citations: message.citations } : {}),
        },
        finish_reason: toFinishReason(response.finish_reason) ?? 'stop',
        logprobs: null,
      },
    ],
    usage: toUsage(response.usage),
  };
}

interface StreamEventBody {
  type?: string;
  id?: string;
  index?: number;
  delta?: {
    message?: {
      content?: { text?: string };
      tool_plan?: string;
      tool_calls?: CohereToolCall;
      citations?: unknown;
    };
    finish_reason?: string;
    usage?: CohereUsage;
  };
}

/**
 * Cohere's stream events as chunks, one event at a time: content-delta → content, tool-call-start → a call with
 * its id and name, tool-call-delta → argument pieces, tool-plan-delta → the `tool_plan` extension, citation-start
 * → a `citations` extension delta, message-end → finish reason and a usage chunk. `done` once message-end came.
 */
export class CohereStreamTranslator {
  #id = '';
  readonly #created = Math.floor(Date.now() / 1000);
  #roleSent = false;
  #calls = 0;
  done = false;

  constructor(private readonly model: string) {}

  push(event: StreamEventBody): ChatCompletionChunk[] {
    const message = event.delta?.message;
    switch (event.type) {
      case 'message-start':
        this.#id = event.id ?? this.#id;
        return [];
      case 'content-delta':
        return message?.content?.text ? [this.#chunk({ content: message.content.text })] : [];
      case 'tool-plan-delta':
        return message?.tool_plan ? [this.#chunk({ tool_plan: message.tool_plan } as ChunkDelta)] : [];
      case 'tool-call-start': {
        const call = message?.tool_calls;
        const index = this.#calls++;
        return [
          this.#chunk({
            tool_calls: [
              {
                index,
                id: call?.id ?? '',
                type: 'function',
                function: { name: call?.function?.name ?? '', arguments: call?.function?.arguments ?? '' },
              },
            ],
          }),
        ];
      }
      case 'tool-call-delta': {
        const args = message?.tool_calls?.function?.arguments;
        return args
          ? [this.#chunk({ tool_calls: [{ index: this.#calls - 1, function: { arguments: args } }] })]
          : [];
      }
      case 'citation-start':
        return message?.citations ? [this.#chunk({ citations: [message.citations] } as ChunkDelta)] : [];
      case 'message-end': {
        this.done = true;
        const finish = toFinishReason(event.delta?.finish_reason) ?? 'stop';
        return [
          this.#chunk({}, finish),
          { ...this.#base(), choices: [], usage: toUsage(event.delta?.usage) },
        ];
      }
      default:
        return []; // content-start, content-end, tool-call-end, citation-end, debug
    }
  }

  #base() {
    return {
      id: this.#id,
      object: 'chat.completion.chunk' as const,
      created: this.#created,
      model: this.model,
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
