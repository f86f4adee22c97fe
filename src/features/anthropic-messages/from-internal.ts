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

const NOT_ALPHANUMERIC = /[^A-Za-z0-9]/g;

/** `msg_…` ids, as Anthropic clients are used to, from the upstream's own id. */
export const messageId = (id: string | undefined) =>
  id?.startsWith('msg_') ? id : `msg_${(id ?? '').replace(NOT_ALPHANUMERIC, '') || Date.now().toString(36)}`;

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
  if (message?.tool_calls)
    for (const call of message.tool_calls) {
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

/**
 * `toAnthropicMessage`'s answer as the JSON text JSON.stringify makes of it. The common answer (text, or
 * nothing, with counted usage) is written directly: building the message and its blocks to stringify them
 * cost more than the rest of the translation together (issue 26). Any other answer is built and stringified.
 */
export function anthropicMessageJson(completion: ChatCompletion, model: string): string {
  const choice = completion.choices[0];
  const message = choice?.message;
  const text = message?.content;
  const input = completion.usage?.prompt_tokens ?? 0;
  const output = completion.usage?.completion_tokens ?? 0;
  if (
    !message ||
    (text != null && typeof text !== 'string') ||
    message.tool_calls?.length ||
    message.thinking_blocks?.length ||
    message.reasoning_content ||
    !Number.isFinite(input) ||
    !Number.isFinite(output)
  )
    return JSON.stringify(toAnthropicMessage(completion, model));
  const content = text ? `[{"type":"text","text":${JSON.stringify(text)}}]` : '[]';
  return (
    `{"id":${JSON.stringify(messageId(completion.id))},"type":"message","role":"assistant",` +
    `"model":${JSON.stringify(model)},"content":${content},"stop_reason":"${toStopReason(choice.finish_reason)}",` +
    `"stop_sequence":null,"usage":{"input_tokens":${input},"output_tokens":${output}}}`
  );
}
