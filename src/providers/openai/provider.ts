import type { Logger } from '../../core/logger.js';
import { ProviderError, protocolError } from '../errors.js';
import {
  joinUrl,
  parseJsonEvent,
  postForText,
  postStream,
  probeUpstream,
  readSse,
  type UpstreamResponse,
  upstreamList,
  withoutSecrets,
} from '../http.js';
import { keepRawBody } from '../raw-body.js';
import { rawRequestOf, withModel } from '../raw-request.js';
import {
  type CallOptions,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type EmbeddingRequest,
  type EmbeddingResponse,
  type LlmProvider,
  NATIVE_REQUEST,
  NATIVE_RESPONSE,
  type NativeProtocol,
  type ProviderKind,
  type StreamEvent,
} from '../types.js';
import { postEmbeddings } from './embeddings.js';
import { servesGoogleExtensions, withoutGoogleExtensions } from './google-extensions.js';
import {
  NATIVE_PATHS,
  nativeCompletion,
  nativePayload,
  type OpenAiNativeProtocol,
  relayCompletionsStream,
  relayResponsesStream,
} from './native.js';
import { applyQuirks, type Quirk, type Restorer } from './quirks.js';

export interface OpenAiProviderOptions {
  name?: string;
  /** e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1 (Ollama), http://vllm:8000/v1 */
  baseUrl: string;
  apiKey?: string | undefined;
  /** Extra headers some OpenAI-compatible hosts want (OpenAI-Organization, HTTP-Referer…). */
  headers?: Record<string, string>;
  /** A preset's departures from OpenAI (see openai-compatible/presets.ts). */
  quirks?: readonly Quirk[];
  /** For quirks' debug lines (a dropped parameter). */
  logger?: Logger | undefined;
  /** Where embeddings go when not `{baseUrl}/embeddings` (Hugging Face: a Text Embeddings Inference server). */
  embeddingsUrl?: string | undefined;
  kind?: ProviderKind;
  /**
   * OpenAI endpoints besides chat completions this upstream serves, for clients of the same protocol
   * (pass-through): OpenAI itself has both; of the presets, the local servers serve `completions`.
   */
  nativeProtocols?: readonly OpenAiNativeProtocol[];
}

/**
 * OpenAI and every OpenAI-compatible server. The request body is forwarded as the client sent it (only
 * `model` is replaced by the deployment's upstream model), so fields Colloquy does not know pass through.
 * Streams are relayed chunk by chunk with each chunk's original JSON text (`raw`), never buffered.
 */
export class OpenAiProvider implements LlmProvider {
  readonly kind: ProviderKind;
  readonly name: string;
  readonly #completionsUrl: URL;
  readonly #modelsUrl: URL;
  readonly #embeddingsUrl: URL;
  readonly #headers: Record<string, string>;
  readonly #streamHeaders: Record<string, string>;
  readonly #quirks: readonly Quirk[];
  readonly #logger: Logger | undefined;
  readonly #secrets: readonly string[];
  readonly #baseUrl: string;
  readonly #keepsGoogleExtensions: boolean;
  readonly nativeProtocols: readonly NativeProtocol[];

  constructor(options: OpenAiProviderOptions) {
    this.name = options.name ?? 'openai';
    this.kind = options.kind ?? 'openai';
    this.#completionsUrl = new URL(joinUrl(options.baseUrl, 'chat/completions'));
    this.#modelsUrl = new URL(joinUrl(options.baseUrl, 'models'));
    this.#embeddingsUrl = new URL(options.embeddingsUrl ?? joinUrl(options.baseUrl, 'embeddings'));
    this.#headers = {
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
      ...options.headers,
    };
    this.#streamHeaders = { ...this.#headers, accept: 'text/event-stream' };
    this.#quirks = options.quirks ?? [];
    this.#logger = options.logger;
    this.#secrets = options.apiKey ? [options.apiKey] : [];
    this.#baseUrl = options.baseUrl;
    this.#keepsGoogleExtensions = servesGoogleExtensions(options.baseUrl);
    this.nativeProtocols = options.nativeProtocols ?? [];
  }

  /** The client's own Responses or completions request, when this upstream serves that endpoint. */
  #native(request: ChatCompletionRequest) {
    const native = request[NATIVE_REQUEST];
    if (!native || native.protocol === 'messages' || !this.nativeProtocols.includes(native.protocol)) return;
    return {
      protocol: native.protocol,
      body: native.body,
      url: new URL(joinUrl(this.#baseUrl, NATIVE_PATHS[native.protocol])),
    };
  }

  async complete(request: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const native = this.#native(request);
    if (native) {
      const text = await postForText({
        provider: this.name,
        url: native.url,
        headers: this.#headers,
        body: JSON.stringify(nativePayload(native.protocol, native.body, request.model, false)),
        signal: options.signal,
        deadline: options.deadline,
        timeouts: options.timeouts,
        headersTimeoutMs: options.timeouts.firstTokenMs,
        secrets: this.#secrets,
      });
      const read = nativeCompletion(this.name, native.protocol, text, request.model);
      read.completion[NATIVE_RESPONSE] = read.native;
      return read.completion;
    }
    const { body, restore } = this.#prepare(request, options);
    const text = await postForText({
      provider: this.name,
      url: this.#completionsUrl,
      headers: this.#headers,
      body: completionRequestText(request, body),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
      secrets: this.#secrets,
    });
    return parseCompletion(this.name, text, body.model, options.requestId, restore);
  }

  async stream(request: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const native = this.#native(request);
    if (native) {
      const response = await postStream({
        provider: this.name,
        url: native.url,
        headers: this.#streamHeaders,
        body: JSON.stringify(nativePayload(native.protocol, native.body, request.model, true)),
        signal: options.signal,
        deadline: options.deadline,
        timeouts: options.timeouts,
        headersTimeoutMs: options.timeouts.firstTokenMs,
        secrets: this.#secrets,
      });
      const relay = native.protocol === 'responses' ? relayResponsesStream : relayCompletionsStream;
      return relay(this.name, response, { ...options, startedAt, secrets: this.#secrets });
    }
    // Usage is always requested so it can be recorded; the /v1 route hides it from clients that did not ask.
    // Quirks see the whole payload (Mistral's preset drops `stream_options`: its last chunk has usage anyway).
    const { body, restore } = this.#prepare(
      { ...request, stream: true, stream_options: { ...request.stream_options, include_usage: true } },
      options,
    );
    const response = await postStream({
      provider: this.name,
      url: this.#completionsUrl,
      headers: this.#streamHeaders,
      body: JSON.stringify(body),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      // Headers come before the first chunk, so they too must arrive within the first-token timeout.
      headersTimeoutMs: options.timeouts.firstTokenMs,
      secrets: this.#secrets,
    });
    return relayOpenAiStream(this.name, response, { ...options, startedAt, restore, secrets: this.#secrets });
  }

  embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return postEmbeddings({
      provider: this.name,
      url: this.#embeddingsUrl,
      headers: this.#headers,
      body,
      options,
      secrets: this.#secrets,
    });
  }

  checkAccess(signal: AbortSignal): Promise<void> {
    return probeUpstream({
      provider: this.name,
      url: this.#modelsUrl,
      headers: this.#headers,
      signal,
      secrets: this.#secrets,
    });
  }

  #prepare(request: ChatCompletionRequest, options: CallOptions) {
    const body = this.#keepsGoogleExtensions ? request : withoutGoogleExtensions(request);
    return applyQuirks(this.#quirks, body, {
      provider: this.name,
      requestId: options.requestId,
      logger: this.#logger,
    });
  }

  async listModels(options: { signal: AbortSignal }): Promise<string[]> {
    const response = await upstreamList(this.#modelsUrl, this.#headers, options.signal);
    if (response.statusCode !== 200) {
      await response.body.dump();
      return [];
    }
    const body = (await response.body.json()) as { data?: { id?: unknown }[] };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }
}

/** A non-streaming answer in OpenAI's format, checked, mapped back by the quirks and completed. */
export function parseCompletion(
  provider: string,
  text: string,
  model: string,
  requestId: string,
  restore?: Restorer | undefined,
): ChatCompletion {
  let completion: ChatCompletion;
  try {
    completion = JSON.parse(text);
  } catch {
    throw protocolError(provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  if (!completion || !Array.isArray(completion.choices))
    throw protocolError(provider, 'no choices in the answer');
  if (restore) completion = restore.completion(completion);
  // The usual case: OpenAI's own fields all there and nothing restored. The parsed object is the answer, and
  // its text may be sent as it came (raw-body.ts); JSON.parse stays, as the check that the answer is JSON.
  else if (isComplete(completion)) {
    keepRawBody(completion, text);
    return completion;
  }
  // Some OpenAI-compatible servers leave out fields OpenAI always sends; clients (and the response
  // schema) rely on them.
  return {
    ...completion,
    id: typeof completion.id === 'string' && completion.id ? completion.id : `chatcmpl-${requestId}`,
    object: 'chat.completion',
    created:
      typeof completion.created === 'number' ? Math.floor(completion.created) : Math.floor(Date.now() / 1000),
    model: typeof completion.model === 'string' && completion.model ? completion.model : model,
  };
}

/**
 * Whether the answer already holds what parseCompletion would set, in the form it would set it, and nothing
 * the response schema's serializer would write differently: the upstream's bytes are then the answer.
 */
function isComplete(c: ChatCompletion): boolean {
  if (typeof c.id !== 'string' || c.id === '' || c.object !== 'chat.completion') return false;
  if (!Number.isInteger(c.created) || typeof c.model !== 'string' || c.model === '') return false;
  if (c.usage !== undefined && (typeof c.usage !== 'object' || c.usage === null)) return false;
  for (const choice of c.choices) if (typeof choice !== 'object' || choice === null) return false;
  return true;
}

/**
 * A non-streaming call's JSON. Pass-through (issue 26): when nothing changed the client's body but the model
 * (no quirk or Google-extension removal made a copy, no guardrail, translation or file did before: see
 * raw-request.ts) and it asks for no stream, the client's own bytes go out with the deployment's model
 * written in place of its own, instead of the parsed body serialized again. A `stream` the client left out
 * stays out (OpenAI's default is `false`); `stream_options` or `stream: true` take the serializing path,
 * which sets `stream: false` and drops them.
 */
export function completionRequestText(
  request: ChatCompletionRequest,
  prepared: ChatCompletionRequest,
): string {
  if (prepared === request && request.stream !== true && request.stream_options === undefined) {
    const raw = rawRequestOf(request);
    const text = raw === undefined ? undefined : withModel(raw, request.model);
    if (text !== undefined) return text;
  }
  return JSON.stringify(withoutStreaming(prepared));
}

/**
 * A non-streaming call's body: the client's fields, `stream: false`, no `stream_options`. Copied key by key:
 * object rest and spread on the parsed request cost 2-3x this (~1.5 % of a request's CPU in a profile).
 */
export function withoutStreaming(body: ChatCompletionRequest): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key in body) {
    if (key !== 'stream_options') copy[key] = body[key as keyof ChatCompletionRequest];
  }
  copy.stream = false;
  return copy;
}

export interface StreamErrorBody {
  message?: string;
  code?: string;
  type?: string;
  [key: string]: unknown;
}

// The upstream's SSE messages as chunks, up to `[DONE]`. Stream generators are module-level: a generator function
// made per stream gives every stream's generator objects a hidden class (and prototype) of their own, ~1 KiB
// kept per open stream and megamorphic property access on the relay path.
export async function* relayOpenAiStream(
  provider: string,
  response: UpstreamResponse,
  options: CallOptions & {
    startedAt: number;
    restore?: Restorer | undefined;
    secrets?: readonly string[] | undefined;
    /** Reads an upstream's in-stream error its own way (Azure's content filter). */
    streamError?: ((error: StreamErrorBody) => ProviderError | undefined) | undefined;
  },
): AsyncGenerator<StreamEvent> {
  let done = false;
  // A stream whose choice finished (finish_reason) and whose upstream then closed cleanly is complete even
  // without `[DONE]`: several OpenAI-compatible servers end that way. Without a finish_reason it was cut.
  let finished = false;
  for await (const message of readSse(provider, response.body, options)) {
    if (message.data === '[DONE]') {
      done = true;
      break;
    }
    const chunk = parseJsonEvent<ChatCompletionChunk & { error?: StreamErrorBody }>(provider, message.data);
    if (chunk.error || message.event === 'error') {
      const mapped = chunk.error && options.streamError?.(chunk.error);
      throw withoutSecrets(
        mapped ??
          new ProviderError(
            `upstream ${provider} failed mid-stream: ${chunk.error?.message ?? 'error event'}`,
            {
              provider,
              status: 502,
              code: chunk.error?.code ?? 'upstream_stream_error',
              type: chunk.error?.type ?? 'server_error',
              retryable: true,
              kind: 'upstream',
            },
          ),
        options.secrets,
      );
    }
    if (!Array.isArray(chunk.choices)) throw protocolError(provider, 'a chunk without choices');
    if (!finished && chunk.choices.length > 0 && chunk.choices[0]?.finish_reason) finished = true;
    if (options.restore) {
      const restored = options.restore.chunk(chunk);
      yield restored === chunk ? { chunk, raw: message.data } : { chunk: restored };
    } else yield { chunk, raw: message.data };
  }
  if (!done && !finished) throw protocolError(provider, 'the stream ended without [DONE] or a finish_reason');
}
