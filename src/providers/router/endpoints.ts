import type { LlmProvider } from '../types.js';

/** A client API of Colloquy's, as GET /v1/models names it in a model's `endpoints` (issue 20). */
export type ModelEndpoint = 'chat.completions' | 'messages' | 'responses' | 'embeddings' | 'completions';

/**
 * Which of Colloquy's endpoints serve a model, from where it routes. Every chat model is served by chat
 * completions, Messages and Responses (translated where the upstream speaks the other protocol); embeddings need a
 * provider with an embeddings API; legacy completions an upstream that serves them. Upstream listings do not say what a model is, so an embedding model is
 * told by its name (OpenAI's `text-embedding-*`, `*-embed-*`, bge/e5/gte families): offered on embeddings
 * only, since a chat request for it would fail upstream.
 */
export function endpointsOf(targets: { provider: LlmProvider; model: string }[]): ModelEndpoint[] {
  if (targets.length === 0) return [];
  const embeddingModel = targets.every((t) => EMBEDDING_MODEL.test(t.model));
  if (embeddingModel)
    return targets.some((t) => typeof t.provider.embed === 'function') ? ['embeddings'] : [];
  // Legacy completions only pass through: every deployment must serve them itself.
  const completions = targets.every((t) => t.provider.nativeProtocols?.includes('completions'));
  return ['chat.completions', 'messages', 'responses', ...(completions ? (['completions'] as const) : [])];
}

const EMBEDDING_MODEL = /embed|(^|[/-])(bge|e5|gte)-/i;
