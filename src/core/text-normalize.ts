import { AppError } from './errors.js';

/**
 * One normalisation of client text at the edge, so every database stores and returns the same thing (issue
 * 19: SQLite took a NUL that PostgreSQL refused with a 400, and stored a lone surrogate as three U+FFFD where
 * PostgreSQL stored one).
 *
 * - A lone UTF-16 surrogate (valid in a JSON `\ud800` escape, not in Unicode) becomes one U+FFFD, as the
 *   WHATWG encoders do (`String.prototype.toWellFormed`).
 * - A NUL (U+0000) is refused with 400 `invalid_text`, naming the field: PostgreSQL cannot store it in
 *   text, and quietly dropping it would change what the client sent without telling them.
 *
 * Applied to every JSON body and query string on /api and to every WebSocket frame of the conversation API;
 * /v1 bodies are passed to the upstream untouched.
 */
export function normalizeText<T>(value: T, where = 'body'): T {
  if (typeof value === 'string') return normalizeString(value, where) as T;
  if (value === null || typeof value !== 'object') return value;
  // Iterative, so a deeply nested body cannot exhaust the stack.
  const stack: { node: Record<string, unknown> | unknown[]; path: string }[] = [
    { node: value as Record<string, unknown>, path: where },
  ];
  while (stack.length) {
    const { node, path } = stack.pop()!;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const item = node[i];
        if (typeof item === 'string') node[i] = normalizeString(item, `${path}.${i}`);
        else if (item !== null && typeof item === 'object')
          stack.push({ node: item as Record<string, unknown>, path: `${path}.${i}` });
      }
      continue;
    }
    for (const key of Object.keys(node)) {
      const item = node[key];
      let name = key;
      if (!isClean(key)) {
        name = normalizeString(key, `${path}.${key}`);
        delete node[key];
        node[name] = item;
      }
      if (typeof item === 'string') {
        if (!isClean(item)) node[name] = normalizeString(item, `${path}.${name}`);
      } else if (item !== null && typeof item === 'object') {
        stack.push({ node: item as Record<string, unknown>, path: `${path}.${name}` });
      }
    }
  }
  return value;
}

interface Es2024String {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

const isClean = (text: string) => (text as unknown as Es2024String).isWellFormed() && !text.includes('\0');

function normalizeString(text: string, path: string): string {
  if (text.includes('\0')) {
    const param = path.replace(/^(body|query|frame)\.?/, '') || undefined;
    throw new AppError(
      'invalid_text',
      `${path} contains a NUL character (U+0000), which text may not hold: remove it`,
      param ? { param } : {},
    );
  }
  return (text as unknown as Es2024String).toWellFormed();
}

/**
 * For text that must be kept although it cannot be refused (an audit record of a refused request): NUL and
 * lone surrogates become U+FFFD, so it is stored alike everywhere.
 */
export function storableText(text: string): string {
  return (text.replaceAll('\0', '\uFFFD') as unknown as Es2024String).toWellFormed();
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * The longest prefix of `text` with at most `max` UTF-16 code units that ends on a grapheme boundary: an
 * emoji sequence, a flag or a letter with its accents is kept whole or dropped whole, never cut inside (a
 * title cut inside 👩‍👩‍👧 left a lone surrogate that each database stored differently).
 */
export function truncateGraphemes(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = 0;
  for (const { segment, index } of graphemes.segment(text)) {
    if (index + segment.length > max) break;
    end = index + segment.length;
  }
  return text.slice(0, end);
}
