import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from '../metrics/registry.js';
import {
  countPromptTokens,
  countTexts,
  countTextTokens,
  estimatePromptTokens,
  estimateUsage,
  tokenCounts,
} from './tokens.js';

describe('token counting', () => {
  it('loads the tokenizer in a worker thread: the event loop keeps turning and its heap stays small', async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    let turns = 0;
    let counting = true;
    const spin = () => {
      turns++;
      if (counting) setImmediate(spin);
    };
    setImmediate(spin);
    assert.equal(await countTextTokens('hello world'), 2);
    counting = false;
    // Loading the o200k tables here took ~380 ms in one synchronous block and ~50 MiB of this heap.
    assert.ok(turns > 20, `the event loop turned ${turns} times while the tables loaded`);
    const grownMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    assert.ok(grownMiB < 20, `the main heap grew ${grownMiB.toFixed(1)} MiB`);
  });

  it('counts many texts in one call, empty ones as zero', async () => {
    assert.deepEqual(await countTexts(['', 'The quick brown fox', 'hello world']), [0, 4, 2]);
    assert.deepEqual(await countTexts(['', '']), [0, 0]);
  });

  it('answers calls made together (sent to the worker as one task) each with its own counts', async () => {
    const texts = ['one', 'two words', 'three short words', 'and a fourth, longer text than the others'];
    const calls = texts.map((text) => [`${text} (together)`, `${text}, together again`]);
    const together = await Promise.all(calls.map((call) => countTexts(call)));
    // The reference: the tokenizer itself, here on the test's own thread.
    const { countTokens } = await import('gpt-tokenizer');
    assert.deepEqual(
      together,
      calls.map((call) => call.map((text) => countTokens(text))),
    );
  });

  it('counts a chat prompt as OpenAI does: 4 tokens of framing per message, plus 3', async () => {
    const messages = [
      { role: 'system' as const, content: 'hello world' },
      { role: 'user' as const, content: [{ type: 'text' as const, text: 'The quick brown fox' }] },
    ];
    assert.equal(await countPromptTokens(messages), 3 + (4 + 2) + (4 + 4));
    assert.deepEqual(await estimateUsage(messages, 'hello world'), {
      prompt_tokens: 17,
      completion_tokens: 2,
      total_tokens: 19,
    });
  });

  it('estimates a prompt for admission within 20 % of the count, in English, code and Chinese', async () => {
    const prompts = [
      'You are a helpful assistant. What is the capital of France, and why is it famous for its museums?',
      'export function add(a: number, b: number): number {\n  return a + b; // the sum\n}\n'.repeat(20),
      '道可道，非常道。名可名，非常名。無名天地之始；有名萬物之母。故常無欲，以觀其妙；常有欲，以觀其徼。',
    ];
    for (const content of prompts) {
      const messages = [{ role: 'user' as const, content }];
      const [estimated, counted] = [estimatePromptTokens(messages), await countPromptTokens(messages)];
      assert.ok(Math.abs(estimated - counted) <= counted * 0.2, `${estimated} estimated, ${counted} counted`);
    }
  });

  it('counts each text once: a history sent again comes from the cache, and /metrics shows both', async () => {
    const history = Array.from({ length: 50 }, (_, i) => `message ${i} of a long conversation`);
    const before = { ...tokenCounts() };
    const first = await countTexts(history);
    const again = await countTexts([...history, 'the new message']);
    assert.deepEqual(again.slice(0, 50), first);
    assert.equal(tokenCounts().counted - before.counted, 51, 'only the new text went to the tokenizer');
    assert.equal(tokenCounts().cached - before.cached, 50);
    const scraped = await createMetrics({ track: 'stable' }).registry.metrics();
    assert.match(
      scraped,
      new RegExp(
        `colloquy_token_counts_total\\{source="cached",track="stable"\\} ${tokenCounts().cached}\\n`,
      ),
    );
    assert.match(scraped, /colloquy_token_counts_total\{source="approximated",track="stable"\} 0\n/);
  });
});
