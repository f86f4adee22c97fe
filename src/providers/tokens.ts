import { createRequire } from 'node:module';
import type { ChatMessage, Usage } from './types.js';

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
export const countTextTokens = (text: string): number => (text ? tokenizer().countTokens(text) : 0);

// Loaded on first use: the encoder tables add ~56 MiB of RSS, which an instance whose upstreams report
// usage (and that trims no context) never needs.
let loaded: typeof import('gpt-tokenizer') | undefined;
function tokenizer() {
  loaded ??= createRequire(import.meta.url)('gpt-tokenizer') as typeof import('gpt-tokenizer');
  return loaded;
}

/** Prompt tokens as OpenAI counts chat messages: content plus ~4 tokens of framing per message, plus 3. */
export function countPromptTokens(messages: Pick<ChatMessage, 'content' | 'tool_calls'>[]): number {
  let total = 3;
  for (const message of messages) total += 4 + countTextTokens(messageText(message));
  return total;
}

/** Usage counted here, for answers whose upstream reported none (a cut stream, a server without usage). */
export function estimateUsage(
  messages: Pick<ChatMessage, 'content' | 'tool_calls'>[],
  completion: string,
): Usage {
  const prompt = countPromptTokens(messages);
  const completionTokens = countTextTokens(completion);
  return {
    prompt_tokens: prompt,
    completion_tokens: completionTokens,
    total_tokens: prompt + completionTokens,
  };
}
