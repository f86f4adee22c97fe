/**
 * OpenAI's own endpoints other than chat completions, for a client that speaks them (issue 20's
 * pass-through): the Responses API (`POST /responses`,
 * https://platform.openai.com/docs/api-reference/responses) and legacy text completions (`POST /completions`,
 * https://platform.openai.com/docs/api-reference/completions). The client's body goes as it came, only
 * `model` replaced, so fields Colloquy does not model (reasoning items, built-in tools, `suffix`, `echo`,
 * `logprobs`…) survive; the answer is relayed as it came, and a chat-completions reading of it rides
 * along for the ledger, budgets, metrics and guardrails.
 */
import { ProviderError, protocolError } from '../errors.js';
import { parseJsonEvent, readSse, type UpstreamResponse, withoutSecrets } from '../http.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionChunk,
  FinishReason,
  StreamEvent,
  ToolCall,
  Usage,
} from '../types.js';

export type OpenAiNativeProtocol = 'responses' | 'completions';

/** The upstream path of each protocol, under the provider's base URL. */
export const NATIVE_PATHS: Record<OpenAiNativeProtocol, string> = {
  responses: 'responses',
  completions: 'completions',
};

/** The body sent upstream: the client's, `model` replaced; a stream always asks for usage (completions). */
export function nativePayload(
  protocol: OpenAiNativeProtocol,
  body: Record<string, unknown>,
  model: string,
  stream: boolean,
): Record<string, unknown> {
  const payload: Record<string, unknown> = { ...body, model, stream };
  if (protocol === 'completions' && stream) {
    payload.stream_options = {
      ...(body.stream_options as Record<string, unknown> | undefined),
      include_usage: true,
    };
  } else if (!stream) delete payload.stream_options;
  return payload;
}

interface TextCompletion {
  id?: string;
  created?: number;
  model?: string;
  choices?: { text?: string; index?: number; finish_reason?: FinishReason }[];
  usage?: Usage | null;
}

interface ResponseOutputItem {
  type?: string;
  call_id?: string;
  name?: string;
  arguments?: string;
  content?: { type?: string; text?: string }[];
}

interface ResponseObjectWire {
  id?: string;
  created_at?: number;
  model?: string;
  status?: string;
  incomplete_details?: { reason?: string } | null;
  output?: ResponseOutputItem[];
  usage?: { input_tokens?: number; output_tokens?: number; total_tokens?: number } | null;
  error?: { code?: string; message?: string } | null;
}

/** A non-streaming answer read as a chat completion (the native answer is kept by the caller). */
export function nativeCompletion(
  provider: string,
  protocol: OpenAiNativeProtocol,
  text: string,
  model: string,
): { completion: ChatCompletion; native: unknown } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError(provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  if (!parsed || typeof parsed !== 'object') throw protocolError(provider, 'the answer is not an object');
  const completion =
    protocol === 'completions'
      ? fromTextCompletion(provider, parsed as TextCompletion, model)
      : fromResponse(provider, parsed as ResponseObjectWire, model);
  return { completion, native: parsed };
}

function fromTextCompletion(provider: string, c: TextCompletion, model: string): ChatCompletion {
  if (!Array.isArray(c.choices)) throw protocolError(provider, 'no choices in the answer');
  return {
    id: c.id ?? 'cmpl',
    object: 'chat.completion',
    created: c.created ?? Math.floor(Date.now() / 1000),
    model: c.model ?? model,
    choices: c.choices.map((choice, i) => ({
      index: choice.index ?? i,
      message: { role: 'assistant', content: choice.text ?? '' },
      finish_reason: choice.finish_reason ?? 'stop',
    })),
    ...(c.usage ? { usage: c.usage } : {}),
  };
}

function fromResponse(provider: string, r: ResponseObjectWire, model: string): ChatCompletion {
  if (!Array.isArray(r.output)) throw protocolError(provider, 'no output in the response');
  const text = r.output
    .flatMap((item) =>
      item.type === 'message'
        ? (item.content ?? []).flatMap((p) => (p.type === 'output_text' ? [p.text ?? ''] : []))
        : [],
    )
    .join('');
  const calls: ToolCall[] = r.output.flatMap((item) =>
    item.type === 'function_call'
      ? [
          {
            id: item.call_id ?? '',
            type: 'function' as const,
            function: { name: item.name ?? '', arguments: item.arguments ?? '' },
          },
        ]
      : [],
  );
  return {
    id: r.id ?? 'resp',
    object: 'chat.completion',
    created: r.created_at ?? Math.floor(Date.now() / 1000),
    model: r.model ?? model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text || null, ...(calls.length ? { tool_calls: calls } : {}) },
        finish_reason: responseFinish(r, calls.length > 0),
      },
    ],
    ...(r.usage ? { usage: responseUsage(r.usage) } : {}),
  };
}

function responseFinish(r: ResponseObjectWire, calls: boolean): FinishReason {
  if (r.status === 'incomplete')
    return r.incomplete_details?.reason === 'content_filter' ? 'content_filter' : 'length';
  if (r.status === 'failed') return 'error';
  return calls ? 'tool_calls' : 'stop';
}

function responseUsage(u: NonNullable<ResponseObjectWire['usage']>): Usage {
  const prompt = u.input_tokens ?? 0;
  const completion = u.output_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: u.total_tokens ?? prompt + completion,
  };
}

const chunkOf = (
  id: string,
  model: string,
  choices: ChatCompletionChunk['choices'],
): ChatCompletionChunk => ({
  id,
  object: 'chat.completion.chunk',
  created: Math.floor(Date.now() / 1000),
  model,
  choices,
});

/**
 * Relays a legacy completions stream: every `data:` event as it came (`native`), with its reading as a chat
 * chunk; ends at `[DONE]` (or a clean close after a finish_reason, like chat streams).
 */
export async function* relayCompletionsStream(
  provider: string,
  response: UpstreamResponse,
  options: CallOptions & { startedAt: number; secrets?: readonly string[] },
): AsyncGenerator<StreamEvent> {
  let finished = false;
  for await (const message of readSse(provider, response.body, options)) {
    if (message.data === '[DONE]') return;
    const c = parseJsonEvent<TextCompletion & { error?: { message?: string; code?: string } }>(
      provider,
      message.data,
    );
    if (c.error) throw midStreamError(provider, c.error, options.secrets);
    if (!Array.isArray(c.choices)) throw protocolError(provider, 'a chunk without choices');
    if (c.choices.some((choice) => choice.finish_reason)) finished = true;
    const chunk = chunkOf(
      c.id ?? 'cmpl',
      c.model ?? '',
      c.choices.map((choice, i) => ({
        index: choice.index ?? i,
        delta: { content: choice.text ?? '' },
        finish_reason: choice.finish_reason ?? null,
      })),
    );
    if (c.usage) chunk.usage = c.usage;
    yield { chunk, native: { event: 'message', data: message.data } };
  }
  if (!finished) throw protocolError(provider, 'the stream ended without [DONE] or a finish_reason');
}

/**
 * Relays a Responses API stream: every event as it came (`native`), read as chat chunks (text deltas, function
 * calls and their arguments, the final usage and status); ends after response.completed, .incomplete or
 * .failed. The upstream's own `error` / `response.failed` events are relayed too: they are the client's.
 */
export async function* relayResponsesStream(
  provider: string,
  response: UpstreamResponse,
  options: CallOptions & { startedAt: number; secrets?: readonly string[] },
): AsyncGenerator<StreamEvent> {
  // Output index → tool-call index, for argument deltas.
  const calls = new Map<number, number>();
  let id = 'resp';
  let model = '';
  for await (const message of readSse(provider, response.body, options)) {
    const event = parseJsonEvent<{
      type?: string;
      delta?: string;
      output_index?: number;
      item?: ResponseOutputItem;
      response?: ResponseObjectWire;
      message?: string;
      code?: string;
    }>(provider, message.data);
    const type = event.type ?? message.event ?? '';
    const native = { event: type, data: message.data };
    if (event.response?.id) id = event.response.id;
    if (event.response?.model) model = event.response.model;
    const delta: ChatCompletionChunk['choices'][number]['delta'] = {};
    let finish: FinishReason = null;
    let usage: Usage | undefined;
    if (type === 'response.output_text.delta') delta.content = event.delta ?? '';
    else if (type === 'response.output_item.added' && event.item?.type === 'function_call') {
      const index = calls.size;
      calls.set(event.output_index ?? index, index);
      delta.tool_calls = [
        {
          index,
          id: event.item.call_id ?? '',
          type: 'function',
          function: { name: event.item.name ?? '', arguments: '' },
        },
      ];
    } else if (type === 'response.function_call_arguments.delta') {
      const index = calls.get(event.output_index ?? -1);
      if (index !== undefined) delta.tool_calls = [{ index, function: { arguments: event.delta ?? '' } }];
    } else if (
      type === 'response.completed' ||
      type === 'response.incomplete' ||
      type === 'response.failed' ||
      type === 'error'
    ) {
      const r = event.response ?? { status: 'failed' };
      finish = responseFinish(r, calls.size > 0);
      if (r.usage) usage = responseUsage(r.usage);
      const chunk = chunkOf(id, model, [{ index: 0, delta, finish_reason: finish }]);
      if (usage) chunk.usage = usage;
      yield { chunk, native };
      // A failure is the upstream's own event, relayed as it came: it ends the client's stream (finish `error`).
      return;
    }
    yield { chunk: chunkOf(id, model, [{ index: 0, delta, finish_reason: finish }]), native };
  }
  throw protocolError(provider, 'the stream ended without response.completed');
}

function midStreamError(
  provider: string,
  error: { message?: string; code?: string },
  secrets: readonly string[] | undefined,
) {
  return withoutSecrets(
    new ProviderError(`upstream ${provider} failed mid-stream: ${error.message ?? 'error event'}`, {
      provider,
      status: 502,
      code: error.code ?? 'upstream_stream_error',
      type: 'server_error',
      retryable: true,
      kind: 'upstream',
    }),
    secrets,
  );
}
