import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newId, randomHex } from './ids.js';

test('randomHex: hex of the asked length, never repeated, across pool refills shared with newId', () => {
  const seen = new Set<string>();
  // 4 KiB pool: 600 × (16 + 10) bytes refills it several times.
  for (let i = 0; i < 600; i++) {
    const hex = randomHex(16);
    assert.match(hex, /^[0-9a-f]{32}$/);
    assert.ok(!seen.has(hex), 'a repeated id');
    seen.add(hex);
    assert.match(newId('x'), /^x_[0-9a-z]{19}$/);
  }
});
