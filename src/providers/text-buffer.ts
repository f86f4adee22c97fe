/**
 * A stream's answer text, appended delta by delta. `text += delta` keeps a 40-byte rope node alive per
 * chunk next to the delta itself, about 5× the text's own size until the end (125 KiB for a 4,000-chunk
 * answer, per accumulator and stream); joining every 64 deltas keeps it near the text's size (25 KiB).
 */
export class TextBuffer {
  #text = '';
  #parts: string[] = [];

  append(delta: string): void {
    this.#parts.push(delta);
    if (this.#parts.length >= 64) this.#compact();
  }

  toString(): string {
    this.#compact();
    return this.#text;
  }

  #compact() {
    if (this.#parts.length === 0) return;
    this.#text += this.#parts.join('');
    this.#parts.length = 0;
  }
}
