/**
 * Colloquy's internal answer (a chat completion) as an OpenAI Responses API response object
 * (https://platform.openai.com/docs/api-reference/responses/object). Pure.
 */
import { randomHex } from '../../core/ids.js';
import type { ChatCompletion, FinishReason, Usage } from '../../providers/types.js';
import type { ResponsesRequest } from './to-internal.js';

export type OutputItem =
  | {
      type: 'message';
      id: string;
      status: 'in_progress' | 'completed' | 'incomplete';
      role: 'assistant';
      content: { type: 'output_text'; text: string; annotations: unknown[] }[];
    }
  | {
      type: 'function_call';
      id: string;
      call_id: string;
      name: string;
      arguments: string;
      status: 'in_progress' | 'completed' | 'incomplete';
    };

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed';

// 128 random bits, as before, drawn from the shared pool: a CSPRNG call per id was ~6 % of a request's CPU.
export const newItemId = (prefix: 'resp' | 'msg' | 'fc') => `${prefix}_${randomHex(16)}`;

export interface ResponsesUsage {
  input_tokens: number;
  input_tokens_details: { cached_tokens: number };
  output_tokens: number;
  output_tokens_details: { reasoning_tokens: number };
  total_tokens: number;
}

export const toResponsesUsage = (usage: Usage): ResponsesUsage => ({
  input_tokens: usage.prompt_tokens,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: usage.completion_tokens,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: usage.total_tokens,
});

/** Why a response stopped short, from the chat finish reason (length → max_output_tokens). */
export function incompleteReason(finish: FinishReason): 'max_output_tokens' | 'content_filter' | undefined {
  if (finish === 'length') return 'max_output_tokens';
  if (finish === 'content_filter') return 'content_filter';
  return undefined;
}

export interface ResponseShell {
  id: string;
  createdAt: number;
  request: ResponsesRequest;
}

/** The response object around its output items, echoing the request's settings as OpenAI does. */
export function responseObject(
  shell: ResponseShell,
  state: {
    status: ResponseStatus;
    output: OutputItem[];
    usage?: Usage | undefined;
    incomplete?: 'max_output_tokens' | 'content_filter' | undefined;
    error?: { code: string; message: string } | undefined;
  },
) {
  const r = shell.request;
  return {
    id: shell.id,
    object: 'response' as const,
    created_at: shell.createdAt,
    status: state.status,
    error: state.error ?? null,
    incomplete_details: state.incomplete ? { reason: state.incomplete } : null,
    instructions: r.instructions ?? null,
    max_output_tokens: r.max_output_tokens ?? null,
    model: r.model,
    output: state.output,
    output_text: outputText(state.output),
    parallel_tool_calls: r.parallel_tool_calls ?? true,
    previous_response_id: r.previous_response_id ?? null,
    reasoning: { effort: r.reasoning?.effort ?? null, summary: null },
    store: r.store ?? true,
    temperature: r.temperature ?? 1,
    text: r.text ?? { format: { type: 'text' } },
    tool_choice: r.tool_choice ?? 'auto',
    tools: r.tools ?? [],
    top_p: r.top_p ?? 1,
    truncation: 'disabled',
    usage: state.usage ? toResponsesUsage(state.usage) : null,
    user: r.user ?? null,
    metadata: r.metadata ?? {},
  };
}

export type ResponseObject = ReturnType<typeof responseObject>;

/** The text of the message items, in order (the SDKs' `output_text`). */
function outputText(output: OutputItem[]): string {
  let text = '';
  for (const item of output) {
    if (item.type === 'message') for (const part of item.content) text += part.text;
  }
  return text;
}

/** A non-streamed answer: one message item with the text (if any), then one function_call item per call. */
export function fromCompletion(completion: ChatCompletion, shell: ResponseShell, usage: Usage | undefined) {
  const choice = completion.choices[0];
  const incomplete = incompleteReason(choice?.finish_reason ?? null);
  const itemStatus = incomplete ? 'incomplete' : 'completed';
  const output: OutputItem[] = [];
  const text = choice?.message.content;
  if (text) {
    output.push({
      type: 'message',
      id: newItemId('msg'),
      status: itemStatus,
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [] }],
    });
  }
  for (const call of choice?.message.tool_calls ?? []) {
    output.push({
      type: 'function_call',
      id: newItemId('fc'),
      call_id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
      status: 'completed',
    });
  }
  return responseObject(shell, {
    status: incomplete ? 'incomplete' : 'completed',
    output,
    usage,
    incomplete,
  });
}
