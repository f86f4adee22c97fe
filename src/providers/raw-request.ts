/**
 * The client's own bytes of a chat request, kept beside the parsed body (issue 26's request pass-through): an
 * OpenAI-format upstream can be sent the client's JSON with only `model` rewritten, instead of the parsed
 * body serialized again. Keyed by the parsed object itself, as raw-body.ts keys answers: a guardrail's
 * rewrite, a translation, an attached file or a quirk makes a new object, which has no bytes, so a changed
 * body can never go out as the client's bytes. Only the gateway's attempt body (`{ ...body, model }`) carries
 * them over (`carryRawRequest`), and the model is then rewritten in the text (`withModel`).
 */
const rawRequests = new WeakMap<object, string>();

export function keepRawRequest(body: object, text: string): void {
  rawRequests.set(body, text);
}

export function rawRequestOf(body: object): string | undefined {
  return rawRequests.get(body);
}

/** `to` is a shallow copy of `from` with only `model` set: the client's bytes still describe it but for that. */
export function carryRawRequest(from: object, to: object): void {
  const text = rawRequests.get(from);
  if (text !== undefined) rawRequests.set(to, text);
}

// Character codes.
const QUOTE = 34;
const BACKSLASH = 92;
const OPEN_OBJECT = 123;
const CLOSE_OBJECT = 125;
const OPEN_ARRAY = 91;
const CLOSE_ARRAY = 93;
const COLON = 58;
const COMMA = 44;
/** Deeper documents are re-serialized instead (the body parser refuses far shallower ones already). */
const MAX_DEPTH = 256;

const isSpace = (c: number) => c === 32 || c === 10 || c === 13 || c === 9;

/** Objects with more keys than this check repeats with a Set; fewer, by looking through a short list. */
const LIST_KEYS = 16;

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** From an opening quote at `start`: the index past the closing quote, or -1. */
function endOfString(text: string, start: number): number {
  let at = start + 1;
  while (true) {
    const quote = text.indexOf('"', at);
    if (quote < 0) return -1;
    let k = quote - 1;
    while (text.charCodeAt(k) === BACKSLASH) k--;
    if ((quote - 1 - k) % 2 === 0) return quote + 1;
    at = quote + 1;
  }
}

/** A key's decoded text (most keys have no escape: a plain slice). */
function keyAt(text: string, start: number, end: number): string {
  const inner = text.slice(start + 1, end - 1);
  return inner.includes('\\') ? (JSON.parse(text.slice(start, end)) as string) : inner;
}

/**
 * `text` (JSON that JSON.parse accepted: the request as the client sent it) with the value of its top-level
 * `model` key replaced by `model`, or undefined when that cannot be done exactly, and the caller must
 * serialize the parsed body instead:
 * - the document is not an object, or `model` is absent, not a string, or spelt more than once;
 * - any object in it repeats a key (JSON.parse keeps the last, an upstream's parser may keep the first: what
 *   Colloquy checked and counted would not be what the upstream reads);
 * - it is nested deeper than MAX_DEPTH.
 * Keys are compared decoded (`"mod\u0065l"` is `model`); `"model"` inside a string or a nested object is
 * not the key. Strings are skipped with indexOf, so a long prompt costs little more than a short one.
 */
export function withModel(text: string, model: string): string | undefined {
  const n = text.length;
  let i = skipSpace(text, 0);
  if (text.charCodeAt(i) !== OPEN_OBJECT) return undefined;
  let modelStart = -1;
  let modelEnd = -1;
  // The keys of every open object, in one list; per open container, where its keys start in it (-1: an
  // array) and, past LIST_KEYS, a Set of them.
  const keys: string[] = [];
  const starts: number[] = [];
  const sets: (Set<string> | undefined)[] = [];
  // Walks tokens: strings are skipped whole; in an object, a string followed by ':' is a key.
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (starts.length >= MAX_DEPTH) return undefined;
      starts.push(c === OPEN_OBJECT ? keys.length : -1);
      sets.push(undefined);
      i++;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      const from = starts.pop() as number;
      sets.pop();
      if (from >= 0) keys.length = from;
      i++;
      if (starts.length === 0) break;
    } else if (c === QUOTE) {
      const end = endOfString(text, i);
      if (end < 0) return undefined;
      const from = starts[starts.length - 1] as number;
      const j = skipSpace(text, end);
      if (from < 0 || text.charCodeAt(j) !== COLON) {
        i = end;
        continue;
      }
      const key = keyAt(text, i, end);
      const depth = starts.length - 1;
      let set = sets[depth];
      if (set) {
        if (set.has(key)) return undefined;
        set.add(key);
      } else {
        for (let k = from; k < keys.length; k++) if (keys[k] === key) return undefined;
        if (keys.length - from >= LIST_KEYS) sets[depth] = set = new Set(keys.slice(from));
        set?.add(key);
      }
      keys.push(key);
      i = j + 1;
      if (key === 'model' && depth === 0) {
        i = skipSpace(text, i);
        if (text.charCodeAt(i) !== QUOTE) return undefined;
        modelStart = i;
        modelEnd = endOfString(text, i);
        if (modelEnd < 0) return undefined;
        i = modelEnd;
      }
    } else if (c === COMMA || c === COLON || isSpace(c)) i++;
    else {
      // A number, true, false or null: up to the next delimiter.
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === COMMA || d === CLOSE_OBJECT || d === CLOSE_ARRAY || isSpace(d)) break;
        i++;
      }
    }
  }
  if (starts.length !== 0 || modelStart < 0) return undefined;
  return text.slice(0, modelStart) + JSON.stringify(model) + text.slice(modelEnd);
}
