/**
 * Colloquy's internal answers (OpenAI chat completions) as Messages API answers
 * (https://docs.anthropic.com/en/api/messages), for upstreams that do not speak Messages. Pure.
 */
import type { ChatCompletion, FinishReason, ThinkingBlock, Usage } from '../../providers/types.js';

export type StopReason = 'end_turn' | 'max_tokens' | 'tool_use' | 'refusal' | 'stop_sequence';

/** stop → end_turn, length → max_tokens, tool_calls → tool_use (issue 20). */
export function toStopReason(reason: FinishReason | undefined): StopReason {
  switch (reason) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
    case 'function_call':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    default:
      return 'end_turn';
  }
}

export interface AnthropicUsageOut {
  input_tokens: number;
  output_tokens: number;
}

export const toAnthropicUsage = (usage: Usage | undefined | null): AnthropicUsageOut => ({
  input_tokens: usage?.prompt_tokens ?? 0,
  output_tokens: usage?.completion_tokens ?? 0,
});

/** A tool call's arguments as the `input` object Anthropic clients expect (`{}` when they are not JSON). */
export function toolInput(args: string | undefined): Record<string, unknown> {
  if (!args?.trim()) return {};
  try {
    const parsed = JSON.parse(args) as unknown;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

/** `msg_…` ids, as Anthropic clients are used to, from the upstream's own id. */
export const messageId = (id: string | undefined) =>
  id?.startsWith('msg_') ? id : `msg_${(id ?? '').replace(/[^A-Za-z0-9]/g, '') || Date.now().toString(36)}`;

function thinkingContent(blocks: ThinkingBlock[] | undefined, reasoning: string | undefined) {
  if (blocks?.length) return blocks.map((b) => ({ ...b }));
  return reasoning ? [{ type: 'thinking', thinking: reasoning, signature: '' }] : [];
}

export function toAnthropicMessage(completion: ChatCompletion, model: string) {
  const choice = completion.choices[0];
  const message = choice?.message;
  const content: Record<string, unknown>[] = thinkingContent(
    message?.thinking_blocks,
    message?.reasoning_content,
  );
  if (message?.content) content.push({ type: 'text', text: message.content });
  for (const call of message?.tool_calls ?? []) {
    content.push({
      type: 'tool_use',
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return {
    id: messageId(completion.id),
    type: 'message' as const,
    role: 'assistant' as const,
    model,
    content,
    stop_reason: toStopReason(choice?.finish_reason),
    stop_sequence: null,
    usage: toAnthropicUsage(completion.usage),
  };
}
