import { countTokens } from 'gpt-tokenizer';
import type { ChatMessage } from './types.js';

/** Text of a message for counting: string content, text parts, and tool-call arguments. */
export function messageText(message: Pick<ChatMessage, 'content' | 'tool_calls'>): string {
  const content =
    typeof message.content === 'string'
      ? message.content
      : (message.content ?? []).map((part) => (typeof part.text === 'string' ? part.text : '')).join('\n');
  const tools = (message.tool_calls ?? [])
    .map((c) => `${c.function.name}(${c.function.arguments})`)
    .join('\n');
  return tools ? `${content}\n${tools}` : content;
}

/**
 * Counts tokens with the o200k tokenizer (what current OpenAI models use): exact for them, a close
 * estimate for others. Used when an upstream reports no usage, and for context-window trimming.
 */
export const countTextTokens = (text: string): number => (text ? countTokens(text) : 0);

/** Prompt tokens as OpenAI counts chat messages: content plus ~4 tokens of framing per message, plus 3. */
export function countPromptTokens(messages: Pick<ChatMessage, 'content' | 'tool_calls'>[]): number {
  let total = 3;
  for (const message of messages) total += 4 + countTextTokens(messageText(message));
  return total;
}
