import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChatModerationCheck, parseClassification } from './checks/moderation-chat.js';
import { luhn, PiiCheck, validIban } from './checks/pii.js';
import { RegexCheck } from './checks/regex.js';
import { normalizeForMatching } from './normalize.js';
import { redact } from './pipeline.js';

describe('normalisation', () => {
  it('folds width, case, zero-width characters and Latin look-alikes', () => {
    assert.equal(normalizeForMatching('ＦＯＲＢＩＤＤＥＮ'), 'forbidden');
    assert.equal(normalizeForMatching('for\u200bbid\u200dden'), 'forbidden');
    assert.equal(normalizeForMatching('fоrbidden'), 'forbidden'); // Cyrillic о
    assert.equal(normalizeForMatching('f0rb1dden'), 'forbidden');
    assert.equal(normalizeForMatching('fo\u0301rbidden'), 'forbidden'); // combining accent
  });
});

describe('regex check', () => {
  const check = new RegexCheck({ deny: ['(?i)forbidden phrase'], allow: ['forbidden phrase book'] });
  for (const text of [
    'the forbidden phrase',
    'the FORBIDDEN PHRASE',
    'the ｆｏｒｂｉｄｄｅｎ ｐｈｒａｓｅ',
    'the for\u200bbidden phr\u200base',
    'the fоrbidden phrаse', // Cyrillic о and а
    'the f0rbidden phra5e',
  ])
    it(`denies ${JSON.stringify(text)}`, () => assert.equal(check.find(text).length, 1));
  for (const text of ['forbidden fruit', 'a phrase that is forbidden', 'the forbidden phrase book'])
    it(`lets ${JSON.stringify(text)} through`, () => assert.deepEqual(check.find(text), []));
  it('keywords match whole words only', () => {
    const words = new RegexCheck({ keywords: ['ass'] });
    assert.equal(words.find('what an ass').length, 1);
    assert.deepEqual(words.find('a class assistant'), []);
  });
});

describe('pii check', () => {
  const pii = new PiiCheck();
  const cats = (text: string) => pii.find(text).map((f) => f.category);
  it('finds each category', () => {
    assert.deepEqual(cats('write to jane.doe+tag@mail.example.co.uk'), ['email']);
    assert.deepEqual(cats('call +1 (415) 555-0132'), ['phone']);
    assert.deepEqual(cats('call 020 7946 0958'), ['phone']);
    assert.deepEqual(cats('card 4111-1111-1111-1111'), ['card']);
    assert.deepEqual(cats('IBAN GB82 WEST 1234 5698 7654 32'), ['iban']);
    assert.deepEqual(cats('host 192.168.10.1'), ['ip']);
    assert.deepEqual(cats('host 2001:db8::8a2e:370:7334'), ['ip']);
    assert.deepEqual(cats('key sk-proj-abcdefghijklmnopqrstuvwxyz012345'), ['secret']);
    assert.deepEqual(cats('key AKIAIOSFODNN7EXAMPLE'), ['secret']);
    assert.deepEqual(cats('token ghp_abcdefghijklmnopqrstuvwxyz0123456789'), ['secret']);
  });
  it('leaves look-alikes alone: a failed Luhn, a bad IBAN checksum, a date, a version, a word', () => {
    assert.deepEqual(cats('order 4111 1111 1111 1112'), []);
    // (its digit groups still read as a phone number, which is redacted as one)
    assert.ok(!cats('IBAN GB82 WEST 1234 5698 7654 33').includes('iban'));
    assert.deepEqual(cats('on 2026-01-31 at 10:30'), []);
    assert.deepEqual(cats('version 1.2.3 of the app'), []);
    assert.deepEqual(cats('a task-oriented approach'), []);
  });
  it('validators', () => {
    assert.equal(luhn('79927398713'), true);
    assert.equal(luhn('79927398710'), false);
    assert.equal(validIban('DE89370400440532013000'), true);
    assert.equal(validIban('DE89370400440532013001'), false);
  });
  it('redacts with typed placeholders', () => {
    const text = 'mail jane@example.com, card 4111 1111 1111 1111.';
    assert.equal(redact(text, pii.find(text)), 'mail [EMAIL], card [CARD].');
  });
});

describe('moderation by a chat model: reading its answer', () => {
  it('reads scores and true/false categories, inside prose or a fence; refuses anything else', () => {
    assert.deepEqual(
      parseClassification('Sure: {"flagged": true, "categories": {"hate": true, "sexual": 0.2}}'),
      {
        flagged: true,
        scores: { hate: 1, sexual: 0.2 },
      },
    );
    for (const bad of [
      'no JSON',
      '{"flagged": true}',
      '{"categories": {"hate": "high"}}',
      '{"categories": {"hate": -1}}',
      '{oops}',
    ])
      assert.throws(() => parseClassification(bad), Error, bad);
  });

  it('without thresholds, a flagged answer triggers on its categories at 0.5 or more', async () => {
    const check = new ChatModerationCheck({ model: 'm' });
    const answer = (reply: string) => ({
      requestId: 'r',
      guardrail: 'g',
      stage: 'input',
      classify: async () => reply,
    });
    assert.deepEqual(
      await check.find('text', answer('{"flagged": true, "categories": {"violence": 0.9, "hate": 0.6}}')),
      [{ category: 'violence', start: 0, end: 4 }],
    );
    assert.deepEqual(
      await check.find('text', answer('{"flagged": false, "categories": {"violence": 0.9}}')),
      [],
    );
    await assert.rejects(check.find('text', { requestId: 'r', guardrail: 'g', stage: 'input' }));
  });
});
