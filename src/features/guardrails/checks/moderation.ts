import type { Check, CheckContext, Finding } from './types.js';

/**
 * A moderation model behind an OpenAI-compatible `POST /v1/moderations` endpoint (OpenAI's API reference,
 * "Moderations": request `{model, input}`, answer `{id, model, results: [{flagged, categories: {name: bool},
 * category_scores: {name: number}}]}`; a self-hosted Llama Guard or a gateway speaking the same shape works
 * too). With `thresholds`, a category triggers when its score reaches its threshold; without, the categories
 * the endpoint marks true. The finding's category is the highest-scoring one that triggered.
 */
export class ModerationCheck implements Check {
  constructor(
    private readonly options: {
      url: string;
      model?: string | undefined;
      apiKey?: string | undefined;
      thresholds?: Record<string, number> | undefined;
    },
  ) {}

  async find(text: string, context?: CheckContext): Promise<Finding[]> {
    const res = await fetch(this.options.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
      },
      body: JSON.stringify({ ...(this.options.model ? { model: this.options.model } : {}), input: text }),
      signal: context?.signal,
    });
    if (!res.ok) throw new Error(`moderation endpoint answered ${res.status}`);
    const body = (await res.json()) as {
      results?: {
        flagged?: boolean;
        categories?: Record<string, boolean>;
        category_scores?: Record<string, number>;
      }[];
    };
    const result = body.results?.[0];
    if (!result) throw new Error('moderation endpoint answered without results');
    const scores = result.category_scores ?? {};
    const thresholds = this.options.thresholds;
    const triggered = thresholds
      ? Object.entries(thresholds)
          .filter(([name, min]) => (scores[name] ?? 0) >= min)
          .map(([name]) => name)
      : Object.entries(result.categories ?? {})
          .filter(([, on]) => on)
          .map(([name]) => name);
    if (!triggered.length) return [];
    triggered.sort((a, b) => (scores[b] ?? 0) - (scores[a] ?? 0));
    return [{ category: triggered[0]!, start: 0, end: text.length }];
  }
}
