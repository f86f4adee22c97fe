import { randomBytes } from 'node:crypto';
import { protocolError } from '../errors.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChunkDelta,
  FinishReason,
  ToolCall,
  Usage,
} from '../types.js';
import { contentFiltered } from './errors.js';
import type { GeminiCandidate, GeminiPart, GeminiResponse, GeminiUsage } from './wire.js';

/**
 * Gemini answers as the internal (OpenAI chat-completions) format: `candidates` are choices, functionCall parts
 * tool calls, `usageMetadata` usage (https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse).
 */

/** Finish reasons that mean the answer was cut by a filter (https://ai.google.dev/api/generate-content#FinishReason). */
const FILTERED = new Set([
  'SAFETY',
  'RECITATION',
  'BLOCKLIST',
  'PROHIBITED_CONTENT',
  'SPII',
  'IMAGE_SAFETY',
  'IMAGE_PROHIBITED_CONTENT',
  'IMAGE_RECITATION',
]);

export function toFinishReason(reason: string | undefined, hasToolCalls: boolean): FinishReason {
  if (!reason || reason === 'FINISH_REASON_UNSPECIFIED') return null;
  if (reason === 'MAX_TOKENS') return 'length';
  if (FILTERED.has(reason)) return 'content_filter';
  if (reason === 'STOP') return hasToolCalls ? 'tool_calls' : 'stop';
  // MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, LANGUAGE, OTHER…: the model stopped for its own reason.
  return hasToolCalls ? 'tool_calls' : 'stop';
}

/** Thought tokens are billed as output: they count in completion_tokens. */
export function toUsage(usage: GeminiUsage | undefined): Usage {
  const prompt = (usage?.promptTokenCount ?? 0) + (usage?.toolUsePromptTokenCount ?? 0);
  const completion = (usage?.candidatesTokenCount ?? 0) + (usage?.thoughtsTokenCount ?? 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * Gemini often sends function calls without ids: Colloquy gives each one, so the client's tool results map
 * back to their calls (Gemini itself matches results by name and order, which the request keeps).
 */
export const newCallId = () => `call_${randomBytes(12).toString('base64url')}`;

const google = (signature: string | undefined) =>
  signature ? { extra_content: { google: { thought_signature: signature } } } : {};

export function blockedPrompt(provider: string, response: GeminiResponse): void {
  const reason = response.promptFeedback?.blockReason;
  if (reason && !response.candidates?.length) {
    const detail = response.promptFeedback?.blockReasonMessage;
    throw contentFiltered(provider, `prompt blocked: ${reason}${detail ? `, ${detail}` : ''}`);
  }
}

export function fromGeminiResponse(
  provider: string,
  response: GeminiResponse,
  model: string,
  requestId: string,
): ChatCompletion {
  blockedPrompt(provider, response);
  if (!Array.isArray(response.candidates) || !response.candidates.length)
    throw protocolError(provider, 'the answer has no candidates');
  const choices = response.candidates.map((candidate, i) => {
    const { text, calls, textSignature } = readParts(candidate.content?.parts ?? []);
    const finish = toFinishReason(candidate.finishReason, calls.length > 0);
    if (finish === 'content_filter' && !text && !calls.length)
      throw contentFiltered(provider, `answer stopped: ${candidate.finishReason}`);
    return {
      index: candidate.index ?? i,
      message: {
        role: 'assistant' as const,
        content: text || (calls.length ? null : ''),
        ...(calls.length ? { tool_calls: calls } : {}),
        ...google(textSignature),
      },
      finish_reason: finish ?? 'stop',
      logprobs: null,
    };
  });
  return {
    id: `chatcmpl-${response.responseId ?? requestId}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices,
    usage: toUsage(response.usageMetadata),
  };
}

function readParts(parts: GeminiPart[]) {
  let text = '';
  let textSignature: string | undefined;
  const calls: (ToolCall & { extra_content?: unknown })[] = [];
  for (const part of parts) {
    if (part.functionCall) {
      calls.push({
        id: part.functionCall.id || newCallId(),
        type: 'function',
        function: { name: part.functionCall.name, arguments: JSON.stringify(part.functionCall.args ?? {}) },
        ...google(part.thoughtSignature),
      });
    } else if (typeof part.text === 'string' && !part.thought) {
      text += part.text;
      if (part.thoughtSignature) textSignature = part.thoughtSignature;
    } else if (part.thoughtSignature && !calls.length) {
      // A signature on a thought part or an empty part: it belongs to the answer's text.
      textSignature = part.thoughtSignature;
    }
  }
  return { text, calls, textSignature };
}

interface ChoiceState {
  roleSent: boolean;
  produced: boolean;
  finished: boolean;
  calls: number;
}

/**
 * Turns `streamGenerateContent?alt=sse` events into chunks. Each event is a whole GenerateContentResponse with
 * the next parts of each candidate; a functionCall part comes whole (its arguments are never split), so each is
 * one tool-call delta with its own index. The stream has no `[DONE]`: it ends when the connection closes, and
 * `end()` checks it ended properly (a finishReason came). Usage is cumulative in every event; the last one is
 * emitted once, in a `choices: []` chunk, at the end.
 */
export class GeminiStreamTranslator {
  readonly #provider: string;
  readonly #model: string;
  readonly #created = Math.floor(Date.now() / 1000);
  #id: string;
  #usage: GeminiUsage | undefined;
  readonly #choices = new Map<number, ChoiceState>();

  constructor(provider: string, model: string, requestId: string) {
    this.#provider = provider;
    this.#model = model;
    this.#id = `chatcmpl-${requestId}`;
  }

  push(event: GeminiResponse): ChatCompletionChunk[] {
    blockedPrompt(this.#provider, event);
    if (event.responseId && !this.#choices.size) this.#id = `chatcmpl-${event.responseId}`;
    if (event.usageMetadata) this.#usage = event.usageMetadata;
    const chunks: ChatCompletionChunk[] = [];
    (event.candidates ?? []).forEach((candidate, i) => {
      chunks.push(...this.#candidate(candidate.index ?? i, candidate));
    });
    return chunks;
  }

  /** Called when the connection closed: the usage chunk, or an error if no candidate ever finished. */
  end(): ChatCompletionChunk[] {
    const states = [...this.#choices.values()];
    if (!states.length || states.some((s) => !s.finished))
      throw protocolError(this.#provider, 'the stream ended before a finishReason');
    return [{ ...this.#base(), choices: [], usage: toUsage(this.#usage) }];
  }

  #candidate(index: number, candidate: GeminiCandidate): ChatCompletionChunk[] {
    let state = this.#choices.get(index);
    if (!state) {
      state = { roleSent: false, produced: false, finished: false, calls: 0 };
      this.#choices.set(index, state);
    }
    if (state.finished) return [];
    const chunks: ChatCompletionChunk[] = [];
    let pendingSignature: string | undefined;
    for (const part of candidate.content?.parts ?? []) {
      if (part.functionCall) {
        const call = part.functionCall;
        chunks.push(
          this.#chunk(index, state, {
            tool_calls: [
              {
                index: state.calls++,
                id: call.id || newCallId(),
                type: 'function',
                function: { name: call.name, arguments: JSON.stringify(call.args ?? {}) },
                ...google(part.thoughtSignature),
              },
            ],
          }),
        );
      } else if (typeof part.text === 'string' && part.text && !part.thought) {
        chunks.push(this.#chunk(index, state, { content: part.text, ...google(part.thoughtSignature) }));
      } else if (part.thoughtSignature) pendingSignature = part.thoughtSignature;
    }
    // A signature on an empty last part (Gemini closes a text answer so) rides on a delta of its own.
    if (pendingSignature)
      chunks.push(this.#chunk(index, state, { content: '', ...google(pendingSignature) }));
    const finish = toFinishReason(candidate.finishReason, state.calls > 0);
    if (finish) {
      if (finish === 'content_filter' && !state.produced)
        throw contentFiltered(this.#provider, `answer stopped: ${candidate.finishReason}`);
      state.finished = true;
      chunks.push(this.#chunk(index, state, {}, finish));
    }
    return chunks;
  }

  #base() {
    return {
      id: this.#id,
      object: 'chat.completion.chunk' as const,
      created: this.#created,
      model: this.#model,
    };
  }

  #chunk(
    index: number,
    state: ChoiceState,
    delta: ChunkDelta,
    finish: FinishReason = null,
  ): ChatCompletionChunk {
    if (delta.content || delta.tool_calls) state.produced = true;
    if (!state.roleSent) {
      state.roleSent = true;
      delta = { role: 'assistant', ...delta };
    }
    return { ...this.#base(), choices: [{ index, delta, finish_reason: finish, logprobs: null }] };
  }
}
