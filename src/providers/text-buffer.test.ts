import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TextBuffer } from './text-buffer.js';

describe('TextBuffer', () => {
  it('gives back every delta in order, across compactions and repeated reads', () => {
    const buffer = new TextBuffer();
    assert.equal(buffer.toString(), '');
    const deltas = Array.from({ length: 300 }, (_, i) => `w${i} `);
    for (const [i, delta] of deltas.entries()) {
      buffer.append(delta);
      if (i === 100) assert.equal(buffer.toString(), deltas.slice(0, 101).join(''));
    }
    assert.equal(buffer.toString(), deltas.join(''));
    assert.equal(buffer.toString(), deltas.join(''));
  });
});
