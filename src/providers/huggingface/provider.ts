import type { Logger } from '../../core/logger.js';
import { OpenAiProvider } from '../openai/provider.js';
import type { CallOptions, EmbeddingRequest, EmbeddingResponse } from '../types.js';
import { HF_EMBEDDINGS_URL, teiEmbeddings, teiUrl } from './embeddings.js';

export const HF_ROUTER_URL = 'https://router.huggingface.co/v1';

export interface HuggingFaceProviderOptions {
  name?: string;
  apiKey?: string | undefined;
  /** The Inference Providers router (OpenAI-compatible): https://router.huggingface.co/v1 */
  baseUrl?: string | undefined;
  /** Text Embeddings Inference: a server's URL, or a template with `{model}` (default: the router's hosted TEI). */
  embeddingsUrl?: string | undefined;
  logger?: Logger | undefined;
}

/**
 * Hugging Face Inference Providers (https://huggingface.co/docs/inference-providers): chat through the
 * router's OpenAI-compatible API, where a model is `org/model` or `org/model:provider` (`:cerebras`,
 * `:fastest`, `:cheapest`) — so `huggingface/meta-llama/Llama-3.1-8B-Instruct:cerebras` reaches the router
 * as `meta-llama/Llama-3.1-8B-Instruct:cerebras`, in the body, unchanged. Embeddings through Text Embeddings
 * Inference.
 */
export class HuggingFaceProvider extends OpenAiProvider {
  readonly #embeddingsUrl: string;
  readonly #apiKey: string | undefined;

  constructor(options: HuggingFaceProviderOptions) {
    super({
      name: options.name ?? 'huggingface',
      kind: 'huggingface',
      baseUrl: options.baseUrl ?? HF_ROUTER_URL,
      apiKey: options.apiKey,
      logger: options.logger,
    });
    this.#embeddingsUrl = options.embeddingsUrl ?? HF_EMBEDDINGS_URL;
    this.#apiKey = options.apiKey;
  }

  override embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return teiEmbeddings({
      provider: this.name,
      url: teiUrl(this.#embeddingsUrl, body.model),
      headers: this.#apiKey ? { authorization: `Bearer ${this.#apiKey}` } : {},
      body,
      options,
      secrets: this.#apiKey ? [this.#apiKey] : [],
    });
  }
}
