import { createHash } from 'node:crypto';
import type { Quirk, QuirkContext, Restorer } from '../openai/quirks.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage } from '../types.js';

/**
 * Parameters an upstream rejects (or, for some models, answers with an error), removed before sending with
 * a debug line naming each. `when` limits the drop to some models (DeepSeek's reasoner, xAI's reasoning models).
 */
export function dropParams(params: readonly string[], when?: (model: string) => boolean): Quirk {
  return {
    name: 'drop-params',
    prepare(body, context) {
      if (when && !when(body.model)) return { body };
      const dropped = params.filter((p) => body[p] !== undefined);
      if (dropped.length === 0) return { body };
      const copy: ChatCompletionRequest = { ...body };
      for (const p of dropped) delete copy[p];
      debug(context, { dropped, model: body.model }, 'parameters the upstream does not accept were dropped');
      return { body: copy };
    },
  };
}

/** Parameters an upstream knows under another name (Mistral's `random_seed`), renamed unless both are set. */
export function renameParams(renames: Readonly<Record<string, string>>): Quirk {
  return {
    name: 'rename-params',
    prepare(body, context) {
      let copy: ChatCompletionRequest | undefined;
      for (const [from, to] of Object.entries(renames)) {
        if (body[from] === undefined) continue;
        copy ??= { ...body };
        if (copy[to] === undefined) copy[to] = copy[from];
        delete copy[from];
        debug(context, { from, to }, 'a parameter was renamed for the upstream');
      }
      return { body: copy ?? body };
    },
  };
}

const MISTRAL_ID = /^[A-Za-z0-9]{9}$/;
const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A 9-character alphanumeric id derived from any id: the same id always gives the same one. */
export function mistralToolCallId(id: string, salt = 0): string {
  const digest = createHash('sha256')
    .update(salt ? `${id}\u0000${salt}` : id)
    .digest();
  let out = '';
  for (let i = 0; i < 9; i++) out += BASE62[digest[i]! % 62];
  return out;
}

/**
 * Mistral accepts only tool-call ids of 9 characters from a-z, A-Z, 0-9 ("Tool call id was call_… but must be
 * a-z, A-Z, 0-9, with a length of 9"), so a conversation that began on OpenAI or Anthropic (`call_…`,
 * `toolu_…`) fails on its next turn. Other ids are rewritten to a hash of themselves: deterministic, so an
 * assistant's tool call and the tool message answering it (and every later turn of the conversation) get the
 * same id with no state kept between requests. Any rewritten id that comes back in the answer is mapped back.
 */
export const mistralToolCallIds: Quirk = {
  name: 'mistral-tool-call-ids',
  prepare(body) {
    const toMistral = new Map<string, string>();
    const fromMistral = new Map<string, string>();
    const rewrite = (id: string): string => {
      if (MISTRAL_ID.test(id)) return id;
      let mapped = toMistral.get(id);
      if (mapped) return mapped;
      // Two ids of one conversation hashing alike (about 1 in 10^16) would merge two calls: take the next salt.
      for (let salt = 0; ; salt++) {
        mapped = mistralToolCallId(id, salt);
        if (!fromMistral.has(mapped)) break;
      }
      toMistral.set(id, mapped);
      fromMistral.set(mapped, id);
      return mapped;
    };
    let changed = false;
    const messages = body.messages.map((message): ChatMessage => {
      let next = message;
      if (Array.isArray(message.tool_calls) && message.tool_calls.some((c) => !MISTRAL_ID.test(c.id))) {
        next = { ...next, tool_calls: message.tool_calls.map((c) => ({ ...c, id: rewrite(c.id) })) };
      }
      if (typeof message.tool_call_id === 'string' && !MISTRAL_ID.test(message.tool_call_id)) {
        next = { ...next, tool_call_id: rewrite(message.tool_call_id) };
      }
      if (next !== message) changed = true;
      return next;
    });
    if (!changed) return { body };
    return { body: { ...body, messages }, restore: restoreIds(fromMistral) };
  },
};

function restoreIds(fromMistral: Map<string, string>): Restorer {
  const back = (id: string | undefined) => (id === undefined ? undefined : fromMistral.get(id));
  return {
    completion(completion: ChatCompletion) {
      if (!completion.choices.some((c) => c.message?.tool_calls?.some((t) => back(t.id)))) return completion;
      return {
        ...completion,
        choices: completion.choices.map((choice) => ({
          ...choice,
          message: {
            ...choice.message,
            ...(choice.message.tool_calls
              ? { tool_calls: choice.message.tool_calls.map((t) => ({ ...t, id: back(t.id) ?? t.id })) }
              : {}),
          },
        })),
      };
    },
    chunk(chunk: ChatCompletionChunk) {
      if (!chunk.choices.some((c) => c.delta?.tool_calls?.some((t) => back(t.id)))) return chunk;
      return {
        ...chunk,
        choices: chunk.choices.map((choice) => ({
          ...choice,
          delta: {
            ...choice.delta,
            ...(choice.delta.tool_calls
              ? {
                  tool_calls: choice.delta.tool_calls.map((t) =>
                    t.id === undefined ? t : { ...t, id: back(t.id) ?? t.id },
                  ),
                }
              : {}),
          },
        })),
      };
    },
  };
}

/**
 * DeepSeek answers with `reasoning_content` beside `content` (kept: it is relayed to clients as it came).
 * On later turns (https://api-docs.deepseek.com/guides/thinking_mode): the reasoning of an assistant turn that
 * made tool calls must be sent back in every later request, or the API answers 400; the reasoning of other
 * turns is ignored (and deepseek-reasoner used to refuse it with a 400). So it is kept on assistant messages
 * with tool calls and removed from the others.
 */
export const deepseekReasoningContent: Quirk = {
  name: 'deepseek-reasoning-content',
  prepare(body) {
    let changed = false;
    const messages = body.messages.map((message) => {
      if (message.role !== 'assistant' || message.reasoning_content === undefined) return message;
      if (Array.isArray(message.tool_calls) && message.tool_calls.length > 0) return message;
      changed = true;
      const { reasoning_content: _dropped, ...rest } = message;
      return rest as ChatMessage;
    });
    return { body: changed ? { ...body, messages } : body };
  },
};

function debug(context: QuirkContext, fields: Record<string, unknown>, message: string) {
  context.logger?.debug({ provider: context.provider, requestId: context.requestId, ...fields }, message);
}
