import type { ChatCompletionRequest, ChatMessage } from '../../providers/types.js';
import { NATIVE_REQUEST } from '../../providers/types.js';
import type { Guardrail } from './config.js';
import { applyStage, type StageContext, type VerdictSink } from './pipeline.js';

/**
 * The request the upstream will see once the input guardrails have run over the text of every message
 * (string content and text parts, every role: on /v1 the client writes the system prompt too). A copy:
 * the caller's body is not changed, so what the route stored or cached stays as the client sent it.
 *
 * The client's own body kept for a same-protocol upstream (NATIVE_REQUEST, the Messages pass-through) is
 * checked and redacted too, every text in it (Messages, Responses and legacy completions bodies): it is what an Anthropic deployment receives, and it may hold
 * content the translation left out (a pass-through-only request). Its verdicts are not recorded twice.
 */
export async function guardInput(
  guardrails: Guardrail[],
  body: ChatCompletionRequest,
  sink: VerdictSink,
  context?: StageContext,
): Promise<ChatCompletionRequest> {
  const messages: ChatMessage[] = [];
  const lastUser = body.messages.findLastIndex((m) => m.role === 'user');
  for (const [i, message] of body.messages.entries())
    messages.push(
      await guardMessage(applicable(guardrails, message.role, i === lastUser), message, sink, context),
    );
  const out: ChatCompletionRequest = { ...body, messages };
  const native = body[NATIVE_REQUEST];
  // Crisis and injection checks judge messages by role and position, which the native body does not mark.
  const rewriting = guardrails.filter((g) => g.kind !== 'crisis' && g.kind !== 'injection');
  if (native && rewriting.length)
    out[NATIVE_REQUEST] = {
      ...native,
      body: (await guardNative(rewriting, native.body, context)) as Record<string, unknown>,
    };
  return out;
}

/**
 * Which guardrails look at a message: a crisis check only at the newest user message (a statement made turns
 * ago has been answered with a referral already; judging it again would refer every later turn), injection
 * heuristics at what users and tools wrote (an operator's system prompt says "act as …" by design), every
 * other check at every message.
 */
function applicable(guardrails: Guardrail[], role: string, lastUser: boolean): Guardrail[] {
  if (!guardrails.some((g) => g.kind === 'crisis' || g.kind === 'injection')) return guardrails;
  return guardrails.filter((g) =>
    g.kind === 'crisis' ? lastUser : g.kind === 'injection' ? role === 'user' || role === 'tool' : true,
  );
}

const unrecorded: VerdictSink = () => {};

/** Every `text` of a text block, every string `content` and the string `system` of a Messages body. */
async function guardNative(
  guardrails: Guardrail[],
  value: unknown,
  context?: StageContext,
  key?: string,
  parent?: object,
): Promise<unknown> {
  if (typeof value === 'string') {
    const type = (parent as { type?: unknown } | undefined)?.type;
    const isText =
      (key === 'text' && (type === 'text' || type === 'input_text')) ||
      key === 'content' ||
      key === 'system' ||
      // Responses (`instructions`, a string `input`) and legacy completions (`prompt`, `suffix`).
      key === 'instructions' ||
      key === 'input' ||
      key === 'prompt' ||
      key === 'suffix';
    return isText ? applyStage(guardrails, value, unrecorded, 0, context) : value;
  }
  if (Array.isArray(value)) {
    const out = [];
    // A list of prompts is a list of texts; other lists hold blocks or items.
    const itemKey = key === 'prompt' ? key : undefined;
    for (const item of value) out.push(await guardNative(guardrails, item, context, itemKey, value));
    return out;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = k === 'model' ? v : await guardNative(guardrails, v, context, k, value);
    return out;
  }
  return value;
}

async function guardMessage(
  guardrails: Guardrail[],
  message: ChatMessage,
  sink: VerdictSink,
  context?: StageContext,
): Promise<ChatMessage> {
  if (!guardrails.length) return message;
  const content = message.content;
  if (typeof content === 'string') {
    const text = await applyStage(guardrails, content, sink, 0, context);
    return text === content ? message : { ...message, content: text };
  }
  if (!Array.isArray(content)) return message;
  let changed = false;
  const parts = [];
  for (const part of content) {
    if (typeof part.text === 'string') {
      const text = await applyStage(guardrails, part.text, sink, 0, context);
      if (text !== part.text) {
        changed = true;
        parts.push({ ...part, text });
        continue;
      }
    }
    parts.push(part);
  }
  return changed ? { ...message, content: parts } : message;
}
