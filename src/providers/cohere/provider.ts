import { ProviderError, protocolError, upstreamHttpError } from '../errors.js';
import {
  type HttpErrorMapper,
  joinUrl,
  parseJsonEvent,
  postForText,
  postJson,
  probeUpstream,
  readSse,
  type UpstreamResponse,
} from '../http.js';
import { toBase64Embedding } from '../openai/embeddings.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  LlmProvider,
  StreamEvent,
} from '../types.js';
import {
  type CohereResponse,
  CohereStreamTranslator,
  fromCohereResponse,
  toCohereRequest,
} from './translate.js';

export interface CohereProviderOptions {
  name?: string;
  apiKey: string;
  /** COHERE_BASE_URL; default https://api.cohere.com (a trailing /v2 is tolerated). */
  baseUrl?: string | undefined;
}

/**
 * Cohere (`cohere/<model>`): v2 Chat (`POST /v2/chat`, streamed as server-sent events ending with
 * `message-end`) and Embed v2 (`POST /v2/embed`), `Authorization: Bearer`. Errors are `{"message": "…"}`.
 */
export class CohereProvider implements LlmProvider {
  readonly kind = 'cohere' as const;
  readonly name: string;
  readonly #root: string;
  readonly #apiKey: string;
  readonly #mapError: HttpErrorMapper;

  constructor(options: CohereProviderOptions) {
    this.name = options.name ?? 'cohere';
    this.#root = (options.baseUrl ?? 'https://api.cohere.com').replace(/\/+$/, '').replace(/\/v2$/, '');
    this.#apiKey = options.apiKey;
    this.#mapError = (status, text, header) => {
      let message: string | undefined;
      try {
        message = (JSON.parse(text) as { message?: string }).message;
      } catch {
        message = text.slice(0, 500) || undefined;
      }
      return upstreamHttpError(this.name, status, { error: { message } }, header('retry-after'));
    };
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const text = await postForText(
      this.#post('v2/chat', toCohereRequest({ ...body, stream: false }, this.name), options),
    );
    let response: CohereResponse;
    try {
      response = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    return fromCohereResponse(this.name, response, body.model);
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const post = this.#post('v2/chat', toCohereRequest({ ...body, stream: true }, this.name), options);
    const response = await postJson({ ...post, headers: { ...post.headers, accept: 'text/event-stream' } });
    return relayCohereStream(this.name, response, new CohereStreamTranslator(body.model), {
      ...options,
      startedAt,
    });
  }

  /**
   * Embed v2: `texts`, `input_type` (the client's, else search_document), `embedding_types: ["float"]`,
   * `output_dimension` from `dimensions`; usage from `meta.billed_units.input_tokens`.
   */
  async embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    const texts = Array.isArray(body.input) ? body.input : [body.input];
    if (!texts.every((t) => typeof t === 'string'))
      throw new ProviderError('Cohere embeddings take text, not token ids', {
        provider: this.name,
        status: 400,
        code: 'invalid_request',
        type: 'invalid_request_error',
        param: 'input',
        retryable: false,
      });
    const payload = {
      model: body.model,
      texts,
      input_type: typeof body.input_type === 'string' ? body.input_type : 'search_document',
      embedding_types: ['float'],
      ...(body.dimensions ? { output_dimension: body.dimensions } : {}),
    };
    const text = await postForText(this.#post('v2/embed', payload, options));
    let parsed: { embeddings?: { float?: unknown[] }; meta?: { billed_units?: { input_tokens?: number } } };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    const vectors = parsed.embeddings?.float;
    if (!Array.isArray(vectors) || vectors.length !== texts.length)
      throw protocolError(this.name, 'the embeddings answer has no float vector for each text');
    const tokens = Number(parsed.meta?.billed_units?.input_tokens ?? 0);
    return {
      object: 'list',
      data: vectors.map((v, index) => ({
        object: 'embedding' as const,
        index,
        embedding: body.encoding_format === 'base64' ? toBase64Embedding(v as number[]) : (v as number[]),
      })),
      model: body.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  }

  async checkAccess(signal: AbortSignal): Promise<void> {
    await probeUpstream({
      provider: this.name,
      url: new URL(joinUrl(this.#root, 'v1/models?page_size=1')),
      headers: { authorization: `Bearer ${this.#apiKey}` },
      signal,
      mapError: this.#mapError,
      secrets: [this.#apiKey],
    });
  }

  #post(path: string, payload: unknown, options: CallOptions) {
    return {
      provider: this.name,
      url: new URL(joinUrl(this.#root, path)),
      headers: { authorization: `Bearer ${this.#apiKey}` },
      body: JSON.stringify(payload),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
      mapError: this.#mapError,
      secrets: [this.#apiKey],
    };
  }
}

async function* relayCohereStream(
  provider: string,
  response: UpstreamResponse,
  translator: CohereStreamTranslator,
  options: CallOptions & { startedAt: number },
): AsyncGenerator<StreamEvent> {
  for await (const message of readSse(provider, response.body, options)) {
    if (message.data === '[DONE]') break;
    const event = parseJsonEvent<{ type?: string }>(provider, message.data);
    if (!event || typeof event !== 'object')
      throw protocolError(provider, 'a stream event that is not an object');
    if (typeof event.type !== 'string' && message.event) event.type = message.event;
    for (const chunk of translator.push(event)) yield { chunk };
    if (translator.done) return;
  }
  throw protocolError(provider, 'the stream ended without message-end');
}
