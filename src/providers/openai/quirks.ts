import type { Logger } from '../../core/logger.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../types.js';

/**
 * How an OpenAI-compatible upstream departs from OpenAI, as transforms on the way in and out. A quirk sees a
 * copy of the request (never the caller's object) and may hand back a restorer for the answer: what it
 * rewrote on the way in (Mistral's tool-call ids) is mapped back before the client sees it.
 */
export interface Quirk {
  readonly name: string;
  prepare(body: ChatCompletionRequest, context: QuirkContext): QuirkResult;
}

export interface QuirkContext {
  provider: string;
  requestId: string;
  logger: Logger | undefined;
}

export interface QuirkResult {
  body: ChatCompletionRequest;
  restore?: Restorer | undefined;
}

/** Maps an answer back; returns the same object when nothing changed (a stream chunk keeps its raw JSON). */
export interface Restorer {
  completion(completion: ChatCompletion): ChatCompletion;
  chunk(chunk: ChatCompletionChunk): ChatCompletionChunk;
}

/** Runs the quirks in order; the restorers run in reverse order on the answer. */
export function applyQuirks(
  quirks: readonly Quirk[],
  body: ChatCompletionRequest,
  context: QuirkContext,
): { body: ChatCompletionRequest; restore: Restorer | undefined } {
  if (quirks.length === 0) return { body, restore: undefined };
  let current: ChatCompletionRequest = { ...body };
  const restorers: Restorer[] = [];
  for (const quirk of quirks) {
    const result = quirk.prepare(current, context);
    current = result.body;
    if (result.restore) restorers.unshift(result.restore);
  }
  if (restorers.length === 0) return { body: current, restore: undefined };
  return {
    body: current,
    restore: {
      completion: (c) => restorers.reduce((acc, r) => r.completion(acc), c),
      chunk: (c) => restorers.reduce((acc, r) => r.chunk(acc), c),
    },
  };
}
