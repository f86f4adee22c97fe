import { truncateGraphemes } from '../../core/text-normalize.js';

const MAX_TITLE = 60;

/**
 * A conversation title from its first user message, without a model call: whitespace collapsed, cut at a
 * word boundary to at most ~60 characters, with an ellipsis when something was cut.
 */
export function deriveTitle(text: string, max = MAX_TITLE): string | null {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (!flat) return null;
  if (flat.length <= max) return flat;
  const slice = flat.slice(0, max + 1);
  const lastSpace = slice.lastIndexOf(' ');
  // No space in a sensible place (one long word, a URL): cut hard, but never inside a character or an emoji
  // sequence (a cut surrogate pair was stored differently by each database, issue 19).
  const cut = lastSpace >= max / 2 ? slice.slice(0, lastSpace) : truncateGraphemes(flat, max);
  return `${cut.replace(/[\s.,;:!?'"(\-–—]+$/u, '')}…`;
}
