// Runs in the token-counting worker thread (see tokens.ts): the tables load here, once, off the event loop.
import { countTokens } from 'gpt-tokenizer';

export default function countAll(texts: string[]): number[] {
  return texts.map((text) => (text ? countTokens(text) : 0));
}
