import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { LRUCache } from 'lru-cache';
import type { Piscina } from 'piscina';
import { estimateTokenCount } from 'tokenx';
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

// Counting runs in one worker thread, started on first use. Loading the o200k tables is ~380 ms of
// synchronous work, which on the event loop stalled every request in flight, and ~56 MiB, which an
// instance whose upstreams report usage (and that trims no context) never needs. An idle worker ends
// after 10 minutes and gives that memory back.
const WORKER_FILE = fileURLToPath(import.meta.url).replace(/tokens\.(ts|js)$/, 'token-worker.$1');
let pool: Promise<Piscina> | undefined;
function counter(): Promise<Piscina> {
  pool ??= import('piscina').then(({ Piscina }) => {
    const created = new Piscina({
      filename: WORKER_FILE,
      minThreads: 0,
      maxThreads: 1,
      idleTimeout: 600_000,
    });
    // A worker that dies fails the tasks it held (each falls back below); the pool starts a new one.
    created.on('error', () => {});
    return created;
  });
  return pool;
}

// Calls made in the same turn of the event loop go to the worker as one task: a task costs ~150 µs of CPU
// (messages and thread wake-ups) where counting a short prompt costs ~15 µs, so under load the batch is what
// keeps counting off the per-request bill.
let waiting: { texts: string[]; resolve: (counts: number[]) => void; reject: (err: unknown) => void }[] = [];
function countInWorker(texts: string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    if (waiting.length === 0) setImmediate(sendWaiting);
    waiting.push({ texts, resolve, reject });
  });
}
async function sendWaiting() {
  const batch = waiting;
  waiting = [];
  try {
    const counted = (await (await counter()).run(batch.flatMap((call) => call.texts))) as number[];
    let at = 0;
    for (const call of batch) {
      call.resolve(counted.slice(at, at + call.texts.length));
      at += call.texts.length;
    }
  } catch (err) {
    for (const call of batch) call.reject(err);
  }
}

// Counts of texts seen lately, by digest: each turn of a conversation sends its whole history again, and
// counting it again made every turn dearer as the conversation grew (turn 60 of 400-word turns: +5 ms).
const known = new LRUCache<string, number>({ max: 20_000 });

const counts = { cached: 0, counted: 0, approximated: 0 };
/** Texts counted so far: from the cache, by the tokenizer, or approximated (the worker failed). */
export const tokenCounts = (): Readonly<typeof counts> => counts;

/**
 * Tokens of each text with the o200k tokenizer (what current OpenAI models use): exact for them, a close
 * estimate for others. Used when an upstream reports no usage, and for context trimming.
 */
export async function countTexts(texts: string[]): Promise<number[]> {
  const keys = texts.map((text) => (text ? createHash('sha1').update(text).digest('base64') : ''));
  const found = keys.map((key) => (key ? known.get(key) : 0));
  const missing = texts.filter((_, i) => found[i] === undefined);
  counts.cached += keys.filter(Boolean).length - missing.length;
  if (missing.length === 0) return found as number[];
  let counted: number[];
  try {
    counted = await countInWorker(missing);
    counts.counted += missing.length;
  } catch {
    // The worker could not count (it failed to start, or died): estimated, so no request loses its accounting.
    counts.approximated += missing.length;
    return texts.map((text, i) => found[i] ?? estimateTokenCount(text));
  }
  let next = 0;
  return found.map((count, i) => {
    if (count !== undefined) return count;
    const tokens = counted[next++]!;
    known.set(keys[i]!, tokens);
    return tokens;
  });
}

export const countTextTokens = async (text: string): Promise<number> => (await countTexts([text]))[0]!;

/** Tokens one message costs in a chat prompt: its text plus ~4 tokens of framing (as OpenAI counts). */
export async function countMessageTokens(messages: Pick<ChatMessage, 'content' | 'tool_calls'>[]) {
  return (await countTexts(messages.map(messageText))).map((tokens) => 4 + tokens);
}

/** A chat prompt's tokens as OpenAI counts them, from its messages' text tokens: 4 of framing each, plus 3. */
export const promptTotal = (textTokens: number[]) => textTokens.reduce((sum, tokens) => sum + 4 + tokens, 3);

export async function countPromptTokens(messages: Pick<ChatMessage, 'content' | 'tool_calls'>[]) {
  return promptTotal(await countTexts(messages.map(messageText)));
}

/**
 * A fast estimate of a prompt's tokens, for admission checks (token limits, budget reservations): no
 * tokenizer, ~5 µs, within ~10 % of o200k on prose and code (the same framing as countPromptTokens).
 */
export function estimatePromptTokens(messages: Pick<ChatMessage, 'content' | 'tool_calls'>[]): number {
  return promptTotal(messages.map((message) => estimateTokenCount(messageText(message))));
}

/** Usage counted here, for answers whose upstream reported none (a cut stream, a server without usage). */
export async function estimateUsage(
  messages: Pick<ChatMessage, 'content' | 'tool_calls'>[],
  completion: string,
): Promise<Usage> {
  const [completionTokens, ...textTokens] = await countTexts([completion, ...messages.map(messageText)]);
  const prompt = promptTotal(textTokens);
  return {
    prompt_tokens: prompt,
    completion_tokens: completionTokens!,
    total_tokens: prompt + completionTokens!,
  };
}
