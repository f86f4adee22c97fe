/** USD per million tokens. Defaults for common models; the config file's `prices` override or add. */
export interface ModelPrice {
  input: number;
  output: number;
}

export const DEFAULT_PRICES: Record<string, ModelPrice> = {
  'gpt-4o': { input: 2.5, output: 10 },
  'gpt-4o-mini': { input: 0.15, output: 0.6 },
  'gpt-4.1': { input: 2, output: 8 },
  'gpt-4.1-mini': { input: 0.4, output: 1.6 },
  'gpt-4.1-nano': { input: 0.1, output: 0.4 },
  'gpt-5': { input: 1.25, output: 10 },
  'gpt-5-mini': { input: 0.25, output: 2 },
  'gpt-5-nano': { input: 0.05, output: 0.4 },
  'gpt-5-pro': { input: 15, output: 120 },
  o3: { input: 2, output: 8 },
  // Ids that would otherwise find a shorter family name by prefix at another price (o3-mini is not o3).
  'o3-mini': { input: 1.1, output: 4.4 },
  'o3-pro': { input: 20, output: 80 },
  o1: { input: 15, output: 60 },
  'o1-mini': { input: 1.1, output: 4.4 },
  'o1-pro': { input: 150, output: 600 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'gpt-4-turbo': { input: 10, output: 30 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  // Anthropic (also Anthropic's models on Vertex AI, `claude-sonnet-4-5@20250929`: the same prefixes).
  'claude-opus-4-5': { input: 5, output: 25 },
  'claude-opus-4': { input: 15, output: 75 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-haiku-4-5': { input: 1, output: 5 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
  'claude-3-opus': { input: 15, output: 75 },
  // Embeddings (input only).
  'text-embedding-3-small': { input: 0.02, output: 0 },
  'text-embedding-3-large': { input: 0.13, output: 0 },
  'text-embedding-ada-002': { input: 0.1, output: 0 },
  // OpenAI-compatible presets, by the model ids their APIs take (list prices; cache-miss input).
  'deepseek-chat': { input: 0.28, output: 0.42 },
  'deepseek-reasoner': { input: 0.28, output: 0.42 },
  'mistral-large-latest': { input: 2, output: 6 },
  'mistral-medium-latest': { input: 0.4, output: 2 },
  'mistral-small-latest': { input: 0.1, output: 0.3 },
  'codestral-latest': { input: 0.3, output: 0.9 },
  'grok-4': { input: 3, output: 15 },
  'grok-3-mini': { input: 0.3, output: 0.5 },
  'grok-3': { input: 3, output: 15 },
  'llama-3.1-8b-instant': { input: 0.05, output: 0.08 },
  'llama-3.3-70b-versatile': { input: 0.59, output: 0.79 },
  // AWS Bedrock, by model id (on-demand list prices, us-east-1); ids match by prefix, so `…-v1:0` finds its
  // family. Geographic cross-region inference profiles (`us.`, `eu.`) cost the same as the model.
  'amazon.nova-micro': { input: 0.035, output: 0.14 },
  'amazon.nova-lite': { input: 0.06, output: 0.24 },
  'amazon.nova-pro': { input: 0.8, output: 3.2 },
  'us.amazon.nova-lite': { input: 0.06, output: 0.24 },
  'us.amazon.nova-pro': { input: 0.8, output: 3.2 },
  'anthropic.claude-3-5-sonnet': { input: 3, output: 15 },
  'anthropic.claude-3-7-sonnet': { input: 3, output: 15 },
  'anthropic.claude-sonnet-4': { input: 3, output: 15 },
  'anthropic.claude-opus-4-5': { input: 5, output: 25 },
  'anthropic.claude-opus-4': { input: 15, output: 75 },
  'anthropic.claude-haiku-4-5': { input: 1, output: 5 },
  'anthropic.claude-3-5-haiku': { input: 0.8, output: 4 },
  'anthropic.claude-3-haiku': { input: 0.25, output: 1.25 },
  'us.anthropic.claude-3-5-sonnet': { input: 3, output: 15 },
  'us.anthropic.claude-3-7-sonnet': { input: 3, output: 15 },
  'us.anthropic.claude-sonnet-4': { input: 3, output: 15 },
  'us.anthropic.claude-opus-4-5': { input: 5, output: 25 },
  'us.anthropic.claude-opus-4': { input: 15, output: 75 },
  'us.anthropic.claude-haiku-4-5': { input: 1, output: 5 },
  'cohere.command-r-plus': { input: 3, output: 15 },
  'cohere.command-r': { input: 0.5, output: 1.5 },
  'meta.llama3-1-8b-instruct': { input: 0.22, output: 0.22 },
  'meta.llama3-1-70b-instruct': { input: 0.72, output: 0.72 },
  'mistral.mistral-large-2407': { input: 2, output: 6 },
  'amazon.titan-embed-text-v2': { input: 0.02, output: 0 },
  'cohere.embed-english-v3': { input: 0.1, output: 0 },
  'cohere.embed-multilingual-v3': { input: 0.1, output: 0 },
  // Google Gemini (Gemini API and Vertex AI list prices, prompts up to 200k tokens; thinking is output).
  'gemini-3-pro-preview': { input: 2, output: 12 },
  'gemini-2.5-pro': { input: 1.25, output: 10 },
  'gemini-2.5-flash': { input: 0.3, output: 2.5 },
  'gemini-2.5-flash-lite': { input: 0.1, output: 0.4 },
  'gemini-2.0-flash': { input: 0.1, output: 0.4 },
  'gemini-2.0-flash-lite': { input: 0.075, output: 0.3 },
  'gemini-embedding-001': { input: 0.15, output: 0 },
  // Cohere's own API, per 1M tokens, from https://cohere.com/pricing (Generative and Embed models; Command R+
  // and the v3 embed models under its legacy per-token rates), checked 2026-12-07. Dated ids: the undated
  // aliases (`command-r`) have pointed at releases with other prices. Rerank is priced per search: not here.
  'command-a-03-2025': { input: 2.5, output: 10 },
  'command-r-plus-08-2024': { input: 2.5, output: 10 },
  'command-r-08-2024': { input: 0.15, output: 0.6 },
  'command-r7b-12-2024': { input: 0.0375, output: 0.15 },
  'embed-v4.0': { input: 0.12, output: 0 },
  'embed-english-v3.0': { input: 0.1, output: 0 },
  'embed-multilingual-v3.0': { input: 0.1, output: 0 },
  'embed-english-light-v3.0': { input: 0.1, output: 0 },
  'embed-multilingual-light-v3.0': { input: 0.1, output: 0 },
  demo: { input: 0, output: 0 },
};

export class PriceTable {
  readonly #prices: Map<string, ModelPrice>;
  readonly #prefixes: [string, ModelPrice][];

  constructor(overrides: Record<string, ModelPrice> = {}) {
    this.#prices = new Map(Object.entries({ ...DEFAULT_PRICES, ...overrides }));
    // Longest prefix first, so dated ids (gpt-4o-mini-2024-07-18, claude-3-5-haiku-20241022) find their family.
    this.#prefixes = [...this.#prices].sort((a, b) => b[0].length - a[0].length);
  }

  priceOf(model: string): ModelPrice | undefined {
    const exact = this.#prices.get(model);
    if (exact) return exact;
    return this.#prefixes.find(([name]) => model.startsWith(name))?.[1];
  }

  /** Cost in USD; unknown models cost 0 (and are visible as such in usage). */
  cost(model: string, promptTokens: number, completionTokens: number): number {
    const price = this.priceOf(model);
    if (!price) return 0;
    return roundUsd((promptTokens * price.input + completionTokens * price.output) / 1_000_000);
  }
}

/**
 * USD rounded to 1e-10 (a tenth of a nano-dollar, finer than any price per token): what the ledger stores and
 * every API answers, so float products and sums never show as 0.00033120000000000035.
 */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e10) / 1e10;
}
