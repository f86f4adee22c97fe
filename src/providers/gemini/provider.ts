import { joinUrl, probeUpstream } from '../http.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  LlmProvider,
  StreamEvent,
} from '../types.js';
import { geminiEmbeddings } from './embeddings.js';
import { googleErrorMapper } from './errors.js';
import { type GenerateTarget, generateContent, streamGenerateContent } from './generate.js';

export interface GeminiProviderOptions {
  name?: string;
  apiKey: string;
  /** The API root (GEMINI_BASE_URL); default https://generativelanguage.googleapis.com (a trailing /v1beta is tolerated). */
  baseUrl?: string | undefined;
}

export const GEMINI_BASE_URL = 'https://generativelanguage.googleapis.com';

/**
 * Google's Gemini API (https://ai.google.dev/api/generate-content): `POST /v1beta/models/{model}:generateContent`
 * and `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key` (never in the query string, where it
 * would reach access logs). Model names are `gemini/<model>`.
 */
export class GeminiProvider implements LlmProvider {
  readonly kind = 'gemini' as const;
  readonly name: string;
  readonly #root: string;
  readonly #apiKey: string;
  readonly #target: GenerateTarget;

  constructor(options: GeminiProviderOptions) {
    this.name = options.name ?? 'gemini';
    this.#root = (options.baseUrl ?? GEMINI_BASE_URL).replace(/\/+$/, '').replace(/\/v1beta$/, '');
    this.#apiKey = options.apiKey;
    this.#target = {
      provider: this.name,
      url: (model, method) => this.#modelUrl(model, method),
      headers: async () => ({ 'x-goog-api-key': this.#apiKey }),
      secrets: () => [this.#apiKey],
      mapError: googleErrorMapper(this.name),
    };
  }

  complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    return generateContent(this.#target, body, options);
  }

  stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    return streamGenerateContent(this.#target, body, options);
  }

  embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return geminiEmbeddings({
      provider: this.name,
      url: (method) => this.#modelUrl(body.model, method),
      resource: `models/${modelId(body.model)}`,
      headers: { 'x-goog-api-key': this.#apiKey },
      body,
      options,
      secrets: [this.#apiKey],
      mapError: this.#target.mapError,
    });
  }

  /** Lists the models: proves the base URL and the key. */
  async checkAccess(signal: AbortSignal): Promise<void> {
    await probeUpstream({
      provider: this.name,
      url: new URL(joinUrl(this.#root, 'v1beta/models?pageSize=1')),
      headers: { 'x-goog-api-key': this.#apiKey },
      signal,
      mapError: this.#target.mapError,
      secrets: [this.#apiKey],
    });
  }

  #modelUrl(model: string, method: string): URL {
    return new URL(joinUrl(this.#root, `v1beta/models/${encodeURIComponent(modelId(model))}:${method}`));
  }
}

/** `models/gemini-2.5-flash` and `gemini-2.5-flash` name the same model. */
const modelId = (model: string) => model.replace(/^models\//, '');
