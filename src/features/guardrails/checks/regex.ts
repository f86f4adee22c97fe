import { normalizeForMatching } from '../normalize.js';
import type { Check, Finding } from './types.js';

/**
 * Deny (and allow) lists of regular expressions or plain keywords. A pattern may begin with `(?i)` (the
 * RE2/PCRE spelling operators copy from other gateways), which JavaScript lacks: it becomes the `i` flag.
 *
 * Each text is matched twice, as sent and normalised (normalize.ts), so `ｆｏｒｂｉｄｄｅｎ`, `for\u200bbidden`
 * and a Cyrillic `о` all match `forbidden`. A deny match that lies inside an allow match is not reported
 * (deny `ass`, allow `class`). Redaction covers only matches in the text as sent: a match found only in
 * the normalised text has no exact span there, so it is reported over the whole text.
 */
export class RegexCheck implements Check {
  readonly #deny: RegExp[];
  readonly #allow: RegExp[];

  constructor(options: { deny?: string[]; allow?: string[]; keywords?: string[] }) {
    this.#deny = [
      ...(options.deny ?? []).map(compilePattern),
      ...(options.keywords ?? []).map(
        (k) => new RegExp(`\\b${escapeRegExp(normalizeForMatching(k))}\\b`, 'giu'),
      ),
    ];
    this.#allow = (options.allow ?? []).map(compilePattern);
  }

  find(text: string): Finding[] {
    const raw = this.#matches(text);
    if (raw.length) return raw;
    const normalized = normalizeForMatching(text);
    if (normalized === text) return raw;
    return this.#matches(normalized).length ? [{ category: 'deny', start: 0, end: text.length }] : [];
  }

  #matches(text: string): Finding[] {
    const out: Finding[] = [];
    let allowed: [number, number][] | undefined;
    for (const pattern of this.#deny) {
      pattern.lastIndex = 0;
      for (const m of text.matchAll(pattern)) {
        const start = m.index;
        const end = start + m[0].length;
        if (end === start) continue;
        allowed ??= this.#allowedSpans(text);
        if (allowed.some(([s, e]) => s <= start && end <= e)) continue;
        out.push({ category: 'deny', start, end });
      }
    }
    return out;
  }

  #allowedSpans(text: string): [number, number][] {
    const spans: [number, number][] = [];
    for (const pattern of this.#allow)
      for (const m of text.matchAll(pattern)) spans.push([m.index, m.index + m[0].length]);
    return spans;
  }
}

/** Compiles one configured pattern (global, Unicode; `(?i)` prefix → case-insensitive); throws SyntaxError. */
export function compilePattern(source: string): RegExp {
  let flags = 'gu';
  let body = source;
  const inline = /^\(\?([imsu]+)\)/.exec(body);
  if (inline) {
    body = body.slice(inline[0].length);
    for (const f of inline[1]!) if (!flags.includes(f)) flags += f;
  }
  return new RegExp(body, flags);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
