import { anthropicHttpError, relayAnthropicStream } from '../anthropic/provider.js';
import {
  type AnthropicMessage,
  AnthropicStreamTranslator,
  fromAnthropicMessage,
  toAnthropicRequest,
} from '../anthropic/translate.js';
import { protocolError, upstreamHttpError } from '../errors.js';
import { googleErrorMapper } from '../gemini/errors.js';
import { type GenerateTarget, generateContent, streamGenerateContent } from '../gemini/generate.js';
import { type HttpErrorMapper, joinUrl, postForText, postJson, probeUpstream } from '../http.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  LlmProvider,
  StreamEvent,
} from '../types.js';
import { vertexEmbeddings } from './embeddings.js';
import { GoogleTokenSource } from './google-auth.js';

export interface VertexProviderOptions {
  name?: string;
  project: string;
  /** A region (us-central1, europe-west4…) or `global`. */
  location: string;
  /** VERTEX_BASE_URL; default https://{location}-aiplatform.googleapis.com (global: https://aiplatform.googleapis.com). */
  baseUrl?: string | undefined;
  /** A service-account key file (GOOGLE_APPLICATION_CREDENTIALS); without one, the metadata server's token. */
  credentialsFile?: string | undefined;
  /** GCE_METADATA_HOST: the metadata server's host[:port]. */
  metadataHost?: string | undefined;
  /** Tests: the clock the token cache reads. */
  now?: () => number;
}

/** The `anthropic_version` Anthropic's models on Vertex take in the body (instead of the header). */
export const VERTEX_ANTHROPIC_VERSION = 'vertex-2023-10-16';

/**
 * Google Vertex AI (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference): Gemini
 * models at `{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent`
 * (and `:streamGenerateContent?alt=sse`), with the Gemini API's bodies; Anthropic's models (`vertex/claude-…`) at
 * `…/publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict` with Anthropic's Messages body
 * (`anthropic_version: vertex-2023-10-16`, no `model`). Authenticated by an OAuth access token (google-auth.ts).
 */
export class VertexProvider implements LlmProvider {
  readonly kind = 'vertex' as const;
  readonly name: string;
  readonly #root: string;
  readonly #tokens: GoogleTokenSource;
  readonly #gemini: GenerateTarget;
  readonly #anthropicError: HttpErrorMapper;

  constructor(options: VertexProviderOptions) {
    this.name = options.name ?? 'vertex';
    const location = options.location;
    const host =
      options.baseUrl ??
      (location === 'global'
        ? 'https://aiplatform.googleapis.com'
        : `https://${location}-aiplatform.googleapis.com`);
    this.#root = joinUrl(
      host.replace(/\/+$/, '').replace(/\/v1$/, ''),
      `v1/projects/${encodeURIComponent(options.project)}/locations/${encodeURIComponent(location)}`,
    );
    this.#tokens = new GoogleTokenSource(this.name, options);
    const mapError = googleErrorMapper(this.name);
    this.#gemini = {
      provider: this.name,
      url: (model, method) => this.#modelUrl('google', model, method),
      headers: () => this.#headers(),
      secrets: () => this.#tokens.secrets(),
      mapError,
    };
    this.#anthropicError = (status, text, header) => {
      // Anthropic's own errors pass through rawPredict in its shape; Vertex's (quota, auth) are Google's.
      let body: { type?: string; error?: { type?: string; message?: string } } | null = null;
      try {
        body = JSON.parse(text);
      } catch {
        // Google's mapper reads the text
      }
      if (body?.type !== 'error') return mapError(status, text, header);
      const err = upstreamHttpError(this.name, status, body, header('retry-after'));
      return anthropicHttpError(err, '');
    };
  }

  complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    if (isAnthropic(body.model)) return this.#anthropicComplete(body, options);
    return generateContent(this.#gemini, body, options);
  }

  stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    if (isAnthropic(body.model)) return this.#anthropicStream(body, options);
    return streamGenerateContent(this.#gemini, body, options);
  }

  async embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return vertexEmbeddings({
      provider: this.name,
      url: this.#modelUrl('google', body.model, 'predict'),
      headers: await this.#headers(),
      body,
      options,
      secrets: this.#tokens.secrets(),
      mapError: this.#gemini.mapError,
    });
  }

  /** An access token, then the project's endpoints in this location: credentials, project and location at once. */
  async checkAccess(signal: AbortSignal): Promise<void> {
    const url = new URL(joinUrl(this.#root, 'endpoints'));
    url.searchParams.set('pageSize', '1');
    await probeUpstream({
      provider: this.name,
      url,
      headers: await this.#headers(),
      signal,
      mapError: this.#gemini.mapError,
      secrets: this.#tokens.secrets(),
    });
  }

  async #anthropicComplete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const text = await postForText({
      ...(await this.#anthropicPost(body, 'rawPredict', options)),
      headersTimeoutMs: options.timeouts.firstTokenMs,
    });
    let message: AnthropicMessage;
    try {
      message = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    if (message?.type !== 'message' || !Array.isArray(message.content))
      throw protocolError(this.name, 'the answer is not a message');
    return fromAnthropicMessage(message);
  }

  async #anthropicStream(
    body: ChatCompletionRequest,
    options: CallOptions,
  ): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const post = await this.#anthropicPost(body, 'streamRawPredict', options);
    const response = await postJson({
      ...post,
      headers: { ...post.headers, accept: 'text/event-stream' },
      headersTimeoutMs: options.timeouts.connectMs + options.timeouts.firstTokenMs,
    });
    const translator = new AnthropicStreamTranslator(this.name, { model: body.model });
    return relayAnthropicStream(this.name, response, translator, { ...options, startedAt });
  }

  async #anthropicPost(body: ChatCompletionRequest, method: string, options: CallOptions) {
    const { model: _model, ...payload } = toAnthropicRequest(
      { ...body, stream: method === 'streamRawPredict' },
      this.name,
    );
    return {
      provider: this.name,
      url: this.#modelUrl('anthropic', body.model, method),
      headers: await this.#headers(),
      body: JSON.stringify({ anthropic_version: VERTEX_ANTHROPIC_VERSION, ...payload }),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      mapError: this.#anthropicError,
      secrets: this.#tokens.secrets(),
    };
  }

  #modelUrl(publisher: string, model: string, method: string): URL {
    return new URL(
      joinUrl(this.#root, `publishers/${publisher}/models/${encodeURIComponent(model)}:${method}`),
    );
  }

  async #headers(): Promise<Record<string, string>> {
    return { authorization: `Bearer ${await this.#tokens.token()}` };
  }
}

const isAnthropic = (model: string) => /^claude-/.test(model);
