import { joinUrl, postForText, postJson, probeUpstream } from '../http.js';
import { postEmbeddings } from '../openai/embeddings.js';
import { withoutGoogleExtensions } from '../openai/google-extensions.js';
import { parseCompletion, relayOpenAiStream, withoutStreaming } from '../openai/provider.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  LlmProvider,
  StreamEvent,
} from '../types.js';
import { type EntraCredentials, EntraTokenSource } from './entra-token.js';
import { azureErrorMapper, azureStreamError } from './errors.js';

export interface AzureOpenAiProviderOptions {
  name?: string;
  /** The resource endpoint, https://{resource}.openai.azure.com (a trailing /openai or /openai/v1 is tolerated). */
  endpoint: string;
  /**
   * A dated api-version (2024-10-21, 2025-04-01-preview…) selects the deployment paths,
   * `/openai/deployments/{deployment}/…?api-version=…`; `v1` (the default) or `preview` selects the v1 API,
   * `/openai/v1/…` with the deployment as `model` in the body.
   */
  apiVersion?: string | undefined;
  apiKey?: string | undefined;
  entra?: EntraCredentials | undefined;
  /** Tests: the clock the token cache reads. */
  now?: () => number;
}

/**
 * Azure OpenAI: OpenAI's wire format at Azure's paths, with Azure's credentials and error shapes. Model names
 * are deployment names (`azure/<deployment>`). Answers and stream chunks are relayed as Azure sends them, so
 * `content_filter_results`, `prompt_filter_results` and `finish_reason: "content_filter"` reach the client.
 */
export class AzureOpenAiProvider implements LlmProvider {
  readonly kind = 'azure' as const;
  readonly name: string;
  readonly #root: string;
  readonly #apiVersion: string;
  readonly #v1: boolean;
  readonly #apiKey: string | undefined;
  readonly #entra: EntraTokenSource | undefined;
  readonly #mapError;
  readonly #streamError;

  constructor(options: AzureOpenAiProviderOptions) {
    this.name = options.name ?? 'azure';
    this.#root = options.endpoint.replace(/\/+$/, '').replace(/\/openai(\/v1)?$/, '');
    this.#apiVersion = options.apiVersion ?? 'v1';
    this.#v1 = this.#apiVersion === 'v1' || this.#apiVersion === 'preview';
    this.#apiKey = options.apiKey;
    this.#entra =
      options.apiKey || !options.entra
        ? undefined
        : new EntraTokenSource(this.name, options.entra, options.now);
    this.#mapError = azureErrorMapper(this.name);
    this.#streamError = azureStreamError(this.name);
  }

  /** The URL of an operation (`chat/completions`, `embeddings`) for a deployment. */
  url(operation: string, deployment: string): URL {
    if (this.#v1) {
      const url = new URL(joinUrl(this.#root, `openai/v1/${operation}`));
      if (this.#apiVersion === 'preview') url.searchParams.set('api-version', 'preview');
      return url;
    }
    const url = new URL(
      joinUrl(this.#root, `openai/deployments/${encodeURIComponent(deployment)}/${operation}`),
    );
    url.searchParams.set('api-version', this.#apiVersion);
    return url;
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const text = await postForText({
      provider: this.name,
      url: this.url('chat/completions', body.model),
      headers: await this.#headers(),
      body: JSON.stringify(withoutStreaming(withoutGoogleExtensions(body))),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
      mapError: this.#mapError,
      secrets: this.#secrets(),
    });
    return parseCompletion(this.name, text, body.model, options.requestId);
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const headers = await this.#headers();
    const response = await postJson({
      provider: this.name,
      url: this.url('chat/completions', body.model),
      headers: { ...headers, accept: 'text/event-stream' },
      // Usage in streams: api-version 2024-09-01-preview and later, and the v1 API.
      body: JSON.stringify({
        ...withoutGoogleExtensions(body),
        stream: true,
        stream_options: { ...body.stream_options, include_usage: true },
      }),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
      mapError: this.#mapError,
      secrets: this.#secrets(),
    });
    return relayOpenAiStream(this.name, response, {
      ...options,
      startedAt,
      secrets: this.#secrets(),
      streamError: this.#streamError,
    });
  }

  async embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return postEmbeddings({
      provider: this.name,
      url: this.url('embeddings', body.model),
      headers: await this.#headers(),
      body,
      options,
      secrets: this.#secrets(),
      mapError: this.#mapError,
    });
  }

  /** Lists the resource's models: proves the endpoint, the api-version and the credentials at once. */
  async checkAccess(signal: AbortSignal): Promise<void> {
    const url = this.#v1
      ? new URL(joinUrl(this.#root, 'openai/v1/models'))
      : new URL(joinUrl(this.#root, `openai/models?api-version=${encodeURIComponent(this.#apiVersion)}`));
    await probeUpstream({
      provider: this.name,
      url,
      headers: await this.#headers(),
      signal,
      mapError: this.#mapError,
      secrets: this.#secrets(),
    });
  }

  async #headers(): Promise<Record<string, string>> {
    if (this.#entra) return { authorization: `Bearer ${await this.#entra.token()}` };
    return this.#apiKey ? { 'api-key': this.#apiKey } : {};
  }

  #secrets(): string[] {
    return this.#entra ? this.#entra.secrets() : this.#apiKey ? [this.#apiKey] : [];
  }
}
