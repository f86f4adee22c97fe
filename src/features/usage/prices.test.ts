import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PriceTable } from './prices.js';

/**
 * The price table prices each provider family's common models by the ids their APIs take (the ledger prices the
 * upstream model): a model missing here costs 0 in usage and budgets. Azure deployments and Hugging Face's
 * routed models have operator-chosen names or per-provider prices, so the routing file's `prices` name them.
 */
const COMMON: Record<string, string[]> = {
  openai: ['gpt-4o-2024-08-06', 'gpt-4o-mini', 'gpt-4.1-mini', 'gpt-5', 'gpt-5-mini', 'o3', 'o4-mini'],
  anthropic: [
    'claude-sonnet-4-5-20250929',
    'claude-opus-4-1-20250805',
    'claude-opus-4-5-20251101',
    'claude-haiku-4-5-20251001',
    'claude-3-5-haiku-20241022',
  ],
  bedrock: [
    'anthropic.claude-sonnet-4-5-20250929-v1:0',
    'us.anthropic.claude-haiku-4-5-20251001-v1:0',
    'anthropic.claude-opus-4-1-20250805-v1:0',
    'amazon.nova-lite-v1:0',
    'meta.llama3-1-70b-instruct-v1:0',
    'cohere.command-r-plus-v1:0',
    'amazon.titan-embed-text-v2:0',
  ],
  gemini: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-embedding-001'],
  vertex: ['gemini-2.5-flash', 'claude-sonnet-4-5@20250929', 'claude-opus-4-1@20250805'],
  cohere: [
    'command-a-03-2025',
    'command-r-plus-08-2024',
    'command-r-08-2024',
    'command-r7b-12-2024',
    'embed-v4.0',
  ],
  presets: [
    'mistral-large-latest',
    'mistral-small-latest',
    'deepseek-chat',
    'grok-4',
    'llama-3.3-70b-versatile',
  ],
};

describe('price table', () => {
  const prices = new PriceTable();

  for (const [family, models] of Object.entries(COMMON))
    it(`${family}: every common model has a price`, () => {
      for (const model of models) assert.ok(prices.priceOf(model), `${family}: no price for ${model}`);
    });

  it("Cohere's models at Cohere's list prices (USD per 1M tokens)", () => {
    assert.deepEqual(prices.priceOf('command-a-03-2025'), { input: 2.5, output: 10 });
    assert.deepEqual(prices.priceOf('command-r7b-12-2024'), { input: 0.0375, output: 0.15 });
    assert.deepEqual(prices.priceOf('embed-v4.0'), { input: 0.12, output: 0 });
    // A million input and a million output tokens of Command R.
    assert.equal(prices.cost('command-r-08-2024', 1_000_000, 1_000_000), 0.75);
  });

  it('a model is not priced as a shorter family name it starts with', () => {
    assert.deepEqual(prices.priceOf('o3-mini-2025-01-31'), { input: 1.1, output: 4.4 });
    assert.deepEqual(prices.priceOf('claude-opus-4-5-20251101'), { input: 5, output: 25 });
    assert.deepEqual(prices.priceOf('claude-opus-4-1-20250805'), { input: 15, output: 75 });
    assert.deepEqual(prices.priceOf('us.anthropic.claude-opus-4-5-20251101-v1:0'), { input: 5, output: 25 });
  });

  it("the routing file's prices override and add", () => {
    const custom = new PriceTable({
      'gpt-4o-prod': { input: 3, output: 12 },
      'gpt-4o': { input: 1, output: 1 },
    });
    assert.deepEqual(custom.priceOf('gpt-4o-prod'), { input: 3, output: 12 });
    assert.deepEqual(custom.priceOf('gpt-4o'), { input: 1, output: 1 });
  });
});
