import type { ChatCompletion } from '../../providers/types.js';
import type { GuardrailSet } from './config.js';
import { unmask } from './masks.js';
import { applyStage, blockOnly, type StageContext, type VerdictSink } from './pipeline.js';

type Message = ChatCompletion['choices'][number]['message'];

/**
 * The output stage on a whole (non-streamed) answer: its content, reasoning (`reasoning_content` and each
 * thinking block's text), refusal and each tool call's arguments are checked; a tool call's arguments are
 * never rewritten (a guardrail that would redact them blocks, see `blockOnly`). Returns the message to send,
 * the same object when nothing changed; throws `guardrail_blocked` on a block.
 */
export async function guardMessage(
  message: Message,
  set: GuardrailSet,
  sink: VerdictSink,
  context: StageContext,
): Promise<Message> {
  const check = (text: string) => applyStage(set.output, text, sink, 0, context);
  const next: Message = { ...message };
  if (message.content) {
    let content = message.content;
    if (context.masks?.size) content = unmask(content, context.masks);
    next.content = await check(content);
  }
  if (message.reasoning_content) next.reasoning_content = await check(message.reasoning_content);
  if (message.refusal) next.refusal = await check(message.refusal);
  if (message.thinking_blocks) {
    const blocks = [];
    for (const b of message.thinking_blocks) {
      const thinking = b.type === 'thinking' && b.thinking ? await check(b.thinking) : undefined;
      blocks.push(
        b.type === 'thinking' && thinking !== undefined && thinking !== b.thinking ? { ...b, thinking } : b,
      );
    }
    next.thinking_blocks = blocks;
  }
  const tools = blockOnly(set.output);
  for (const call of message.tool_calls ?? [])
    if (call.function.arguments) await applyStage(tools, call.function.arguments, sink, 0, context);
  const changed =
    next.content !== message.content ||
    next.reasoning_content !== message.reasoning_content ||
    next.refusal !== message.refusal ||
    (next.thinking_blocks ?? []).some((b, i) => b !== message.thinking_blocks?.[i]);
  return changed ? next : message;
}
