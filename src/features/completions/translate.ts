/**
 * Legacy completions onto the internal request and back. The upstream always gets the client's own body
 * (pass-through, src/providers/openai/native.ts); the internal request is what the limits, budgets and
 * guardrails read (the prompt as one user message), and the way back serves an answer the guardrails
 * rewrote. Pure.
 */
import {
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  NATIVE_REQUEST,
} from '../../providers/types.js';
import type { CompletionRequest } from './schemas.js';

/** The prompt as text: strings joined; token ids are counted as they are (an estimate for the budget). */
function promptText(prompt: CompletionRequest['prompt']): string {
  if (typeof prompt === 'string') return prompt;
  return (prompt as unknown[])
    .map((p) => (typeof p === 'string' ? p : Array.isArray(p) ? p.join(' ') : String(p)))
    .join('\n');
}

export function toInternalRequest(body: CompletionRequest): ChatCompletionRequest {
  const request: ChatCompletionRequest = {
    model: body.model,
    messages: [{ role: 'user', content: promptText(body.prompt) }],
  };
  if (body.stream) request.stream = true;
  if (body.max_tokens != null) request.max_tokens = body.max_tokens;
  if (body.temperature != null) request.temperature = body.temperature;
  if (body.top_p != null) request.top_p = body.top_p;
  if (body.n != null) request.n = body.n;
  if (body.stop != null) request.stop = body.stop;
  if (body.user !== undefined) request.user = body.user;
  request[NATIVE_REQUEST] = { protocol: 'completions', body: { ...body }, headers: {} };
  return request;
}

export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { text: string; index: number; logprobs: null; finish_reason: string | null }[];
  usage?: ChatCompletion['usage'];
}

export function fromCompletion(completion: ChatCompletion, model: string): TextCompletion {
  return {
    id: completion.id,
    object: 'text_completion',
    created: completion.created,
    model,
    choices: completion.choices.map((c) => ({
      text: c.message.content ?? '',
      index: c.index,
      logprobs: null,
      finish_reason: c.finish_reason,
    })),
    ...(completion.usage ? { usage: completion.usage } : {}),
  };
}

export function fromChunk(chunk: ChatCompletionChunk, model: string) {
  return {
    id: chunk.id,
    object: 'text_completion' as const,
    created: chunk.created,
    model,
    choices: chunk.choices.map((c) => ({
      text: c.delta.content ?? '',
      index: c.index,
      logprobs: null,
      finish_reason: c.finish_reason,
    })),
    ...(chunk.usage ? { usage: chunk.usage } : {}),
  };
}
