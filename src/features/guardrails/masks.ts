import type { ChatCompletionChunk, StreamEvent } from '../../providers/types.js';
import type { MaskTable } from './pipeline.js';

const PLACEHOLDER = /\[(?:EMAIL|PHONE|CARD|IBAN|IP|SECRET|REDACTED)_\d{1,4}\]/g;
/** The longest placeholder (`[REDACTED_9999]`): a `[` further back than this cannot start one. */
const LONGEST = 15;

/** The answer with every placeholder of this request's masks put back (unknown ones stay as written). */
export function unmask(text: string, masks: MaskTable): string {
  if (!masks.size || !text.includes('[')) return text;
  return text.replace(PLACEHOLDER, (token) => masks.byPlaceholder.get(token) ?? token);
}

/** How much of `text` can be unmasked now: all of it, unless it ends in what may be a placeholder's start. */
function safeEnd(text: string): number {
  const open = text.lastIndexOf('[');
  if (open < 0 || text.length - open >= LONGEST || text.indexOf(']', open) >= 0) return text.length;
  return /^\[[A-Z]*(?:_\d*)?$/.test(text.slice(open)) ? open : text.length;
}

/**
 * Reversible masking on a stream (issue 22): a placeholder the model writes may arrive split over chunks
 * (`[EMA` + `IL_1]`), so text that may be the start of one is held until it is complete or cannot be one, at
 * most 15 characters. Runs before the output guardrails, so they judge what the client will read.
 */
export async function* unmaskStream(
  events: AsyncIterable<StreamEvent>,
  masks: MaskTable,
): AsyncGenerator<StreamEvent> {
  const held = new Map<number, string>();
  const flush = (template: ChatCompletionChunk, index: number): StreamEvent | undefined => {
    const text = held.get(index);
    if (!text) return undefined;
    held.delete(index);
    return {
      chunk: {
        ...template,
        choices: [{ index, delta: { content: unmask(text, masks) }, finish_reason: null }],
        usage: undefined,
      },
    } as StreamEvent;
  };
  let template: ChatCompletionChunk | undefined;
  for await (const event of events) {
    const chunk = event.chunk;
    template = chunk;
    const choices: ChatCompletionChunk['choices'] = [];
    const before: StreamEvent[] = [];
    for (const choice of chunk.choices) {
      const content = choice.delta?.content;
      if (typeof content !== 'string' || !content) {
        const out = flush(chunk, choice.index);
        if (out) before.push(out);
        choices.push(choice);
        continue;
      }
      const text = (held.get(choice.index) ?? '') + content;
      const end = choice.finish_reason != null ? text.length : safeEnd(text);
      held.set(choice.index, text.slice(end));
      choices.push({ ...choice, delta: { ...choice.delta, content: unmask(text.slice(0, end), masks) } });
    }
    yield* before;
    // Without `raw` and `native`: those are the upstream's bytes, placeholders and all.
    yield { chunk: { ...chunk, choices } };
  }
  if (template)
    for (const index of [...held.keys()]) {
      const out = flush(template, index);
      if (out) yield out;
    }
}
