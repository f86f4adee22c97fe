import { countMessageTokens, messageText, promptTotal } from '../../providers/tokens.js';
import type { ChatMessage } from '../../providers/types.js';

/** Context windows of well-known models (tokens), matched by the longest prefix of the model name. */
const CONTEXT_WINDOWS: readonly (readonly [string, number])[] = [
  ['gpt-5', 400_000],
  ['gpt-4.1', 1_047_576],
  ['gpt-4o', 128_000],
  ['gpt-4-turbo', 128_000],
  ['gpt-4-32k', 32_768],
  ['gpt-4', 8_192],
  ['gpt-3.5-turbo', 16_385],
  ['o1', 200_000],
  ['o3', 200_000],
  ['o4', 200_000],
  ['claude', 200_000],
  ['gemini', 1_048_576],
  ['llama-3', 128_000],
  ['mistral-large', 128_000],
  ['demo', 8_192],
];

export const DEFAULT_CONTEXT_WINDOW = 8_192;
/** Tokens kept free for the reply when the request sets no max_tokens. */
export const DEFAULT_REPLY_RESERVE = 1_024;

/** The window of a model name (`provider/model` works too); unknown models get the default. */
export function contextWindowFor(model: string, override?: (model: string) => number | undefined): number {
  const configured = override?.(model);
  if (configured) return configured;
  const name = (model.includes('/') ? model.slice(model.lastIndexOf('/') + 1) : model).toLowerCase();
  let best: readonly [string, number] | undefined;
  for (const entry of CONTEXT_WINDOWS) {
    if (name.startsWith(entry[0]) && (!best || entry[0].length > best[0].length)) best = entry;
  }
  return best?.[1] ?? DEFAULT_CONTEXT_WINDOW;
}

export function replyReserve(window: number, maxTokens: number | null | undefined): number {
  return maxTokens ?? Math.min(DEFAULT_REPLY_RESERVE, Math.floor(window / 4));
}

export interface TrimmedPrompt {
  messages: ChatMessage[];
  /** How many history messages were left out, oldest first. */
  dropped: number;
}

/**
 * Fits a prompt into `window - reserve` tokens: the system prompt always stays, history is dropped oldest
 * first, and the newest message always stays (an upstream error beats silently sending nothing). The
 * kept history starts with a user turn, as several providers require.
 */
export async function fitToContext(input: {
  system: string | null;
  history: ChatMessage[];
  window: number;
  reserve: number;
}): Promise<TrimmedPrompt> {
  const system: ChatMessage[] = input.system ? [{ role: 'system', content: input.system }] : [];
  const prompt = [...system, ...input.history];
  const budget = Math.max(0, input.window - input.reserve);
  // A token is at least one byte of UTF-8, so a prompt whose bytes fit needs no tokenizer: most turns, and
  // an instance whose upstreams report usage then never loads it (~0.5 s and ~60 MiB at first use).
  if (promptTotal(prompt.map((message) => Buffer.byteLength(messageText(message)))) <= budget)
    return { messages: prompt, dropped: 0 };
  const costs = await countMessageTokens(prompt);
  let total = costs.splice(0, system.length).reduce((a, b) => a + b, 3) + costs.reduce((a, b) => a + b, 0);
  let start = 0;
  const last = input.history.length - 1;
  while (total > budget && start < last) total -= costs[start++]!;
  while (start < last && input.history[start]!.role !== 'user') total -= costs[start++]!;
  return { messages: [...system, ...input.history.slice(start)], dropped: start };
}
