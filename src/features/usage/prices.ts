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
  o3: { input: 2, output: 8 },
  'o4-mini': { input: 1.1, output: 4.4 },
  'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
  'claude-opus-4': { input: 15, output: 75 },
  'claude-sonnet-4': { input: 3, output: 15 },
  'claude-3-7-sonnet': { input: 3, output: 15 },
  'claude-3-5-sonnet': { input: 3, output: 15 },
  'claude-3-5-haiku': { input: 0.8, output: 4 },
  'claude-haiku-4-5': { input: 1, output: 5 },
  'claude-3-haiku': { input: 0.25, output: 1.25 },
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
    return (promptTokens * price.input + completionTokens * price.output) / 1_000_000;
  }
}
