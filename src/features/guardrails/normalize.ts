/**
 * The text deny/allow lists match against, so trivial obfuscation does not pass (issue 22): NFKC folds
 * full-width and compatibility forms (ｆｏｒｂｉｄｄｅｎ, ﬁ), zero-width and other invisible format characters
 * are removed (for‌bidden), case is folded, and the Cyrillic/Greek letters that look like Latin ones are
 * mapped to them (fоrbidden with a Cyrillic о). Only letters that are visually identical in common fonts are
 * mapped; a wider confusables table would fold legitimate Cyrillic and Greek words into Latin ones.
 */
const HOMOGLYPHS: Record<string, string> = {
  // Cyrillic
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  і: 'i',
  ї: 'i',
  ј: 'j',
  ѕ: 's',
  ԁ: 'd',
  ԛ: 'q',
  ԝ: 'w',
  ӏ: 'l',
  һ: 'h',
  // Greek
  α: 'a',
  β: 'b',
  ε: 'e',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  ο: 'o',
  ρ: 'p',
  τ: 't',
  υ: 'u',
  χ: 'x',
  γ: 'y',
  // Digits and symbols used as letters (leetspeak's most common ones)
  '0': 'o',
  '1': 'i',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '7': 't',
  '@': 'a',
  $: 's',
  // Latin look-alikes outside ASCII that NFKC keeps
  ı: 'i',
  ł: 'l',
  ø: 'o',
  ß: 'ss',
};

// Zero-width and invisible format characters (Unicode category Cf covers ZWSP, ZWNJ, ZWJ, word joiner,
// BOM, soft hyphen, bidi controls) and combining marks left after decomposition (ｆ̲ｏ̲ｏ̲).
const INVISIBLE = /[\p{Cf}\p{Mn}]/gu;

/** The normalised form of `text`; its length may differ from the input's. */
export function normalizeForMatching(text: string): string {
  const folded = text.normalize('NFKD').replace(INVISIBLE, '').normalize('NFKC').toLowerCase();
  let out = '';
  for (const ch of folded) out += HOMOGLYPHS[ch] ?? ch;
  return out;
}

/** Whether `text` is pure ASCII without digits or symbols we map: then normalising only lower-cases it. */
export function isPlainAscii(text: string): boolean {
  return /^[\x20-\x7e\n\r\t]*$/.test(text) && !/[013457@$]/.test(text);
}
