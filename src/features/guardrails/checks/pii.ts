import { isIPv4, isIPv6 } from 'node:net';
import type { Check, Finding } from './types.js';

/**
 * Personal data and secrets: emails, phone numbers, payment cards (Luhn), IBANs (mod 97), IPv4/IPv6
 * addresses and API keys (known prefixes, and long high-entropy tokens).
 *
 * Hand-written: the npm packages that cover this (redact-pii, @redactpii/node, pii-filter) are either
 * unmaintained, untyped, or pattern-only without the checksum validation that keeps order numbers and
 * timestamps from being redacted as cards; each pattern here is validated and measured against the corpus
 * in test/guardrails/corpus/ (precision and recall in the README).
 */
export type PiiCategory = 'email' | 'phone' | 'card' | 'iban' | 'ip' | 'secret';

const EMAIL = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.\p{L}{2,}/gu;
// Digits with spaces or dashes between groups; validated by Luhn and length (13-19) below.
const CARD = /\b\d(?:[ -]?\d){12,18}\b/g;
const IBAN = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g;
// International (+CC …) or a national number in groups with a separator; at least 8 digits in all.
const PHONE =
  /\+\d{1,3}(?:[ .-]?\(?\d{1,6}\)?){1,6}(?!\w)|(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}\b/g;
// Candidates only; node:net's isIPv4 / isIPv6 decide. Not part of a longer dotted or colon-separated run.
const IPV4 = /(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d]|\.\d)/g;
const IPV6 = /(?<![\w:])[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?![\w:])/gi;
/(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}(?::|(?::[0-9a-f]{1,4}){1,6}|[0-9a-f]{1,4})(?![\w:])|(?<![\w:])::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4}(?![\w:])/gi;
// Known secret formats: OpenAI/Anthropic (sk-…), GitHub (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_),
// AWS access key ids (AKIA/ASIA), Slack (xoxb-, xoxp-, …), Google API keys (AIza), Stripe (sk_live_, rk_live_).
const SECRET =
  /\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|(?:AKIA|ASIA)[A-Z0-9]{16}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|[sr]k_(?:live|test)_[A-Za-z0-9]{20,})\b/g;
// A long token mixing letters and digits, scored by Shannon entropy below.
const TOKEN = /\b[A-Za-z0-9+/_-]{32,}={0,2}/g;

export class PiiCheck implements Check {
  readonly #categories: Set<PiiCategory>;

  constructor(categories?: PiiCategory[]) {
    this.#categories = new Set(categories ?? ['email', 'phone', 'card', 'iban', 'ip', 'secret']);
  }

  find(text: string): Finding[] {
    // Most messages hold no digit and no @: nothing below can match them but a secret token.
    const out: Finding[] = [];
    const on = this.#categories;
    if (on.has('secret')) {
      collect(text, SECRET, 'secret', out);
      collect(text, TOKEN, 'secret', out, isHighEntropy);
    }
    if (on.has('email') && text.includes('@')) collect(text, EMAIL, 'email', out);
    if (!/\d/.test(text)) return settle(out);
    if (on.has('iban')) collect(text, IBAN, 'iban', out, validIban);
    if (on.has('card')) collect(text, CARD, 'card', out, validCard);
    if (on.has('ip')) {
      collect(text, IPV4, 'ip', out, isIPv4);
      if (text.includes(':')) collect(text, IPV6, 'ip', out, isIPv6);
    }
    if (on.has('phone')) collect(text, PHONE, 'phone', out, validPhone);
    return settle(out);
  }
}

function collect(
  text: string,
  pattern: RegExp,
  category: PiiCategory,
  out: Finding[],
  valid?: (match: string) => boolean,
) {
  pattern.lastIndex = 0;
  for (const m of text.matchAll(pattern)) {
    const start = m.index;
    const end = start + m[0].length;
    // An earlier, more specific category (a card, an IBAN, a secret) already holds these characters.
    if (out.some((f) => f.start < end && start < f.end)) continue;
    if (valid && !valid(m[0])) continue;
    out.push({ category, start, end });
  }
}

/** In text order: redaction walks them left to right. */
function settle(findings: Finding[]): Finding[] {
  return findings.length > 1 ? findings.sort((a, b) => a.start - b.start) : findings;
}

export function luhn(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function validCard(match: string): boolean {
  const digits = match.replace(/[ -]/g, '');
  // Issuer identification: 2-6 (Visa 4, Mastercard 2/5, Amex 3, Discover 6); no card starts with 0, 1, 7-9
  // except UnionPay 8 and UATP 1, rare enough to leave out rather than redact order numbers.
  return digits.length >= 13 && digits.length <= 19 && /^[2-6]/.test(digits) && luhn(digits);
}

/** ISO 13616: move the first four characters to the end, letters to numbers, the result mod 97 is 1. */
export function validIban(match: string): boolean {
  const iban = match.replace(/ /g, '');
  if (iban.length < 15 || iban.length > 34) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? String(code - 55) : ch;
    for (const digit of value) remainder = (remainder * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return remainder === 1;
}

function validPhone(match: string): boolean {
  const digits = match.replace(/\D/g, '');
  if (digits.length < 8 || digits.length > 15) return false;
  // A date (2026-01-31, 31.01.2026) or a time is not a phone number.
  if (/^\d{4}[-./]\d{1,2}[-./]\d{1,2}$/.test(match) || /^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$/.test(match))
    return false;
  // Four dotted groups of up to three digits read as an address (valid or not), not a phone number.
  if (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(match)) return false;
  // Without a leading + or parentheses, ask for the groupings phone numbers are written in.
  return match.startsWith('+') || match.includes('(') || /^\d{2,4}([ .-])\d{2,4}\1\d{2,4}/.test(match);
}

/** A token of 32+ characters with letters and digits and ≥ 4 bits of entropy per character (a key, not a word). */
function isHighEntropy(token: string): boolean {
  if (!/\d/.test(token) || !/[a-zA-Z]/.test(token)) return false;
  const counts = new Map<string, number>();
  for (const ch of token) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let entropy = 0;
  for (const n of counts.values()) {
    const p = n / token.length;
    entropy -= p * Math.log2(p);
  }
  return entropy >= 4;
}
