import { ProviderError, protocolError } from '../errors.js';
import {
  joinUrl,
  parseJsonEvent,
  postForText,
  postJson,
  readSse,
  type UpstreamResponse,
  upstreamList,
} from '../http.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  LlmProvider,
  StreamEvent,
} from '../types.js';

export interface OpenAiProviderOptions {
  name?: string;
  /** e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1 (Ollama), http://vllm:8000/v1 */
  baseUrl: string;
  apiKey?: string | undefined;
  /** Extra headers some OpenAI-compatible hosts want (OpenAI-Organization, HTTP-Referer…). */
  headers?: Record<string, string>;
}

/**
 * OpenAI and every OpenAI-compatible server. The request body is forwarded as the client sent it (only
 * `model` is replaced by the deployment's upstream model), so fields Colloquy does not know pass through.
 * Streams are relayed chunk by chunk with each chunk's original JSON text (`raw`), never buffered.
 */
export class OpenAiProvider implements LlmProvider {
  readonly kind = 'openai' as const;
  readonly name: string;
  readonly #completionsUrl: URL;
  readonly #modelsUrl: URL;
  readonly #headers: Record<string, string>;

  constructor(options: OpenAiProviderOptions) {
    this.name = options.name ?? 'openai';
    this.#completionsUrl = new URL(joinUrl(options.baseUrl, 'chat/completions'));
    this.#modelsUrl = new URL(joinUrl(options.baseUrl, 'models'));
    this.#headers = {
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
      ...options.headers,
    };
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const text = await postForText({
      provider: this.name,
      url: this.#completionsUrl,
      headers: this.#headers,
      body: JSON.stringify(withoutStreaming(body)),
      signal: options.signal,
      abort: options.abort,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
    });
    let completion: ChatCompletion;
    try {
      completion = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    if (!completion || !Array.isArray(completion.choices))
      throw protocolError(this.name, 'no choices in the answer');
    // Some OpenAI-compatible servers leave out fields OpenAI always sends; clients (and the response
    // schema) rely on them.
    return {
      ...completion,
      id: typeof completion.id === 'string' ? completion.id : `chatcmpl-${options.requestId}`,
      object: 'chat.completion',
      created:
        typeof completion.created === 'number'
          ? Math.floor(completion.created)
          : Math.floor(Date.now() / 1000),
      model: typeof completion.model === 'string' ? completion.model : body.model,
    };
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const response = await postJson({
      provider: this.name,
      url: this.#completionsUrl,
      headers: { ...this.#headers, accept: 'text/event-stream' },
      // Usage is always requested so it can be recorded; the /v1 route hides it from clients that did not ask.
      body: JSON.stringify({
        ...body,
        stream: true,
        stream_options: { ...body.stream_options, include_usage: true },
      }),
      signal: options.signal,
      abort: options.abort,
      timeouts: options.timeouts,
      // Headers come before the first chunk, so they too must arrive within the first-token timeout.
      headersTimeoutMs: options.timeouts.firstTokenMs,
    });
    return relayOpenAiStream(this.name, response, { ...options, startedAt });
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

/**
 * A non-streaming call's body: the client's fields, `stream: false`, no `stream_options`. Copied key by key:
 * object rest and spread on the parsed request cost 2-3x this (~1.5 % of a request's CPU in a profile).
 */
function withoutStreaming(body: ChatCompletionRequest): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key in body) {
    if (key !== 'stream_options') copy[key] = body[key as keyof ChatCompletionRequest];
  }
  copy.stream = false;
  return copy;
}

// The upstream's SSE messages as chunks, up to `[DONE]`. Stream generators are module-level: a generator function
// made per stream gives every stream's generator objects a hidden class (and prototype) of their own, ~1 KiB
// kept per open stream and megamorphic property access on the relay path.
async function* relayOpenAiStream(
  provider: string,
  response: UpstreamResponse,
  options: CallOptions & { startedAt: number },
): AsyncGenerator<StreamEvent> {
  let done = false;
  for await (const message of readSse(provider, response.body, options)) {
    if (message.data === '[DONE]') {
      done = true;
      break;
    }
    const chunk = parseJsonEvent<
      ChatCompletionChunk & { error?: { message?: string; code?: string; type?: string } }
    >(provider, message.data);
    if (chunk.error || message.event === 'error') {
      throw new ProviderError(
        `upstream ${provider} failed mid-stream: ${chunk.error?.message ?? 'error event'}`,
        {
          provider,
          status: 502,
          code: chunk.error?.code ?? 'upstream_stream_error',
          type: chunk.error?.type ?? 'server_error',
          retryable: true,
          kind: 'upstream',
        },
      );
    }
    if (!Array.isArray(chunk.choices)) throw protocolError(provider, 'a chunk without choices');
    yield { chunk, raw: message.data };
  }
  if (!done) throw protocolError(provider, 'the stream ended without [DONE]');
}
