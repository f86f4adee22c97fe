import type { ChatCompletionChunk, ChunkDelta, StreamEvent, ThinkingBlock } from '../../providers/types.js';
import type { GuardrailSet } from './config.js';
import { applyStage, blockOnly, type StageContext, type VerdictSink } from './pipeline.js';

/** The texts of a delta checked like the answer, each in its own window so they never mix. */
const TEXT_FIELDS = ['content', 'reasoning_content', 'refusal'] as const;
type TextField = (typeof TEXT_FIELDS)[number];

/** A streamed tool call being gathered: its pieces merged, released whole once its arguments are complete. */
interface PendingTool {
  index: number;
  id?: string | undefined;
  type?: 'function' | undefined;
  name?: string | undefined;
  arguments: string;
}

/**
 * A stream's text is held back until it has passed the output guardrails (issue 22): content deltas are
 * gathered per choice and released at a sentence's end, or once `holdbackChars` wait (cut at the last space),
 * each release checked over a window of the text released before it plus the new text, so a phrase split
 * across many small chunks is seen whole. Reasoning (`reasoning_content`, and the text of streamed thinking
 * blocks) and a refusal are held and checked the same way, each in a window of its own. A tool call is held
 * until its arguments are complete (the next tool call or any other delta starts, the choice finishes, the
 * stream ends) and its arguments checked whole, a rewriting guardrail counting as a block there (a redacted
 * JSON document would not be the call the model made). A block throws `guardrail_blocked` from the iterator,
 * which every protocol renders as its in-band error: the failing text or call is never sent.
 *
 * The finish reason, usage and anything else pass through after everything held before them is released, so
 * the order the client sees is kept. Events go out without `raw` and `native`: those are the upstream's bytes,
 * not the checked text.
 */
export async function* guardStream(
  events: AsyncIterable<StreamEvent>,
  set: GuardrailSet,
  sink: VerdictSink,
  context?: StageContext,
): AsyncGenerator<StreamEvent> {
  const toolGuardrails = blockOnly(set.output);
  const pending = new Map<string, string>();
  const released = new Map<string, string>();
  const tools = new Map<number, PendingTool>();
  const key = (field: TextField, index: number) => `${index}:${field}`;
  const out = (template: ChatCompletionChunk, index: number, delta: ChunkDelta) =>
    ({
      chunk: { ...template, choices: [{ index, delta, finish_reason: null }], usage: undefined },
    }) as StreamEvent;

  const release = async function* (
    template: ChatCompletionChunk,
    index: number,
    field: TextField,
    all: boolean,
  ) {
    const waiting = pending.get(key(field, index)) ?? '';
    const cut = all ? waiting.length : releasePoint(waiting, set.holdbackChars);
    if (cut <= 0) return;
    const tail = released.get(key(field, index)) ?? '';
    const window = tail + waiting.slice(0, cut);
    const checked = await applyStage(set.output, window, sink, tail.length, context);
    const text = checked.slice(tail.length);
    pending.set(key(field, index), waiting.slice(cut));
    released.set(key(field, index), checked.slice(-set.holdbackChars));
    if (text) yield out(template, index, { [field]: text });
  };
  const releaseTexts = async function* (template: ChatCompletionChunk, index: number, except?: TextField) {
    for (const field of TEXT_FIELDS) if (field !== except) yield* release(template, index, field, true);
  };
  const releaseTool = async function* (template: ChatCompletionChunk, index: number) {
    const tool = tools.get(index);
    if (!tool) return;
    tools.delete(index);
    if (tool.arguments) await applyStage(toolGuardrails, tool.arguments, sink, 0, context);
    const call: NonNullable<ChunkDelta['tool_calls']>[number] = {
      index: tool.index,
      function: { arguments: tool.arguments },
    };
    if (tool.id !== undefined) call.id = tool.id;
    if (tool.type !== undefined) call.type = tool.type;
    if (tool.name !== undefined) call.function!.name = tool.name;
    yield out(template, index, { tool_calls: [call] });
  };
  const releaseAll = async function* (template: ChatCompletionChunk, index: number) {
    yield* releaseTexts(template, index);
    yield* releaseTool(template, index);
  };
  const indexes = () =>
    new Set([...[...pending.keys()].map((k) => Number(k.split(':')[0])), ...tools.keys()]);

  let template: ChatCompletionChunk | undefined;
  for await (const event of events) {
    const chunk = event.chunk;
    template = chunk;
    const rest: ChatCompletionChunk['choices'] = [];
    for (const choice of chunk.choices) {
      const index = choice.index;
      const { content, reasoning_content, refusal, tool_calls, thinking_blocks, ...other } =
        choice.delta ?? ({} as ChunkDelta);
      const texts: Partial<Record<TextField, string>> = {
        content: content ?? '',
        reasoning_content,
        refusal: refusal ?? '',
      };
      // A thinking block's text is reasoning (some upstreams send it only there): it goes through the
      // reasoning window, the block itself (its signature) after it, without its text.
      let blocks: ThinkingBlock[] | undefined;
      if (thinking_blocks) {
        const text = thinking_blocks.map((b) => (b.type === 'thinking' ? b.thinking : '')).join('');
        if (text && !reasoning_content) texts.reasoning_content = text;
        blocks = thinking_blocks.map((b) => (b.type === 'thinking' ? { ...b, thinking: '' } : b));
      }
      for (const field of TEXT_FIELDS) {
        const text = texts[field];
        if (!text) continue;
        // Another kind of output starts: whatever came before it is complete.
        yield* releaseTool(chunk, index);
        yield* releaseTexts(chunk, index, field);
        pending.set(key(field, index), (pending.get(key(field, index)) ?? '') + text);
      }
      for (const call of tool_calls ?? []) {
        yield* releaseTexts(chunk, index);
        let tool = tools.get(index);
        if (tool && tool.index !== call.index) {
          yield* releaseTool(chunk, index);
          tool = undefined;
        }
        if (!tool) {
          tool = { index: call.index, arguments: '' };
          tools.set(index, tool);
        }
        tool.id ??= call.id;
        tool.type ??= call.type;
        tool.name = (tool.name ?? '') + (call.function?.name ?? '') || undefined;
        tool.arguments += call.function?.arguments ?? '';
      }
      const delta: ChunkDelta = blocks ? { ...other, thinking_blocks: blocks } : other;
      if (refusal === null) delta.refusal = null;
      // Anything else in this choice (a thinking block's signature, the finish) goes after everything before
      // it. The role (with a null refusal) opens the message and goes first anyway.
      const ordered =
        choice.finish_reason != null || Object.keys(delta).some((k) => k !== 'role' && k !== 'refusal');
      if (ordered) yield* releaseAll(chunk, index);
      else for (const field of TEXT_FIELDS) yield* release(chunk, index, field, false);
      if (ordered || Object.keys(delta).length) rest.push({ ...choice, delta });
    }
    if (chunk.usage) for (const index of indexes()) yield* releaseAll(chunk, index);
    if (rest.length || chunk.usage || chunk.choices.length === 0)
      yield { chunk: { ...chunk, choices: rest } } as StreamEvent;
  }
  if (template) for (const index of indexes()) yield* releaseAll(template, index);
}

const SENTENCE_END = /[.!?。！？\n][)"'\]”’」』]*(?:\s|$)|[。！？]/g;
/** How much of `text` may go now: through its last sentence end, else up to `max` characters at a space. */
export function releasePoint(text: string, max: number): number {
  let cut = 0;
  SENTENCE_END.lastIndex = 0;
  for (const m of text.matchAll(SENTENCE_END)) {
    // A sentence end at the very end of the text may be a decimal point or an abbreviation still being
    // written ("3." before "14"): wait for the next character unless it is a CJK full stop.
    if (m.index + m[0].length === text.length && !/\s|[。！？]$/.test(m[0])) continue;
    cut = m.index + m[0].length;
  }
  if (cut > 0 || text.length < max) return cut;
  const space = text.lastIndexOf(' ', max);
  cut = space > max / 2 ? space + 1 : max;
  // Never split a surrogate pair.
  const code = text.charCodeAt(cut - 1);
  return code >= 0xd800 && code <= 0xdbff ? cut - 1 : cut;
}
