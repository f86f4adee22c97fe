import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from './errors.js';
import { normalizeText, storableText, truncateGraphemes } from './text-normalize.js';

describe('normalizeText', () => {
  it('replaces each lone surrogate with one U+FFFD and keeps valid pairs', () => {
    assert.equal(normalizeText('a\ud800b\udc00c😀'), 'a\ufffdb\ufffdc😀');
    const body = { title: 'x\udbff', parts: ['ok', { text: '\udc00' }], 'k\ud800': 1, n: 3, z: null };
    assert.deepEqual(normalizeText(body), {
      title: 'x\ufffd',
      parts: ['ok', { text: '\ufffd' }],
      'k\ufffd': 1,
      n: 3,
      z: null,
    });
  });

  it('refuses a NUL anywhere with invalid_text naming the field', () => {
    const refused = (param: string | null) => (err: unknown) => {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, 'invalid_text');
      assert.equal(err.status, 400);
      assert.equal(err.options.param ?? null, param);
      return true;
    };
    assert.throws(() => normalizeText({ a: { b: ['x', 'y\0'] } }), refused('a.b.1'));
    assert.throws(() => normalizeText({ content: '\0' }), refused('content'));
    assert.throws(() => normalizeText('\0', 'frame'), refused(null));
  });

  it('walks a deeply nested body without exhausting the stack', () => {
    let deep: unknown = 'bottom\ud800';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    normalizeText(deep);
    let node = deep;
    while (Array.isArray(node)) node = node[0];
    assert.equal(node, 'bottom\ufffd');
  });

  it('storableText replaces what it cannot refuse', () => {
    assert.equal(storableText('a\0b\ud800'), 'a\ufffdb\ufffd');
  });
});

describe('truncateGraphemes', () => {
  it('never cuts inside a surrogate pair, an emoji sequence, a flag or a combining mark', () => {
    const family = '👩‍👩‍👧';
    assert.equal(truncateGraphemes(family.repeat(3), 20), family.repeat(2));
    assert.equal(truncateGraphemes('🇫🇷🇩🇪', 5), '🇫🇷');
    assert.equal(truncateGraphemes('e\u0301e\u0301', 3), 'e\u0301');
    assert.equal(truncateGraphemes('😀😀', 3), '😀');
    assert.equal(truncateGraphemes('short', 60), 'short');
    assert.equal(truncateGraphemes('abcdef', 3), 'abc');
  });
});
