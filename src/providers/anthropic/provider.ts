import { ProviderError, protocolError, upstreamHttpError } from '../errors.js';
import {
  joinUrl,
  LIST_TIMEOUT_MS,
  mapTransportError,
  type PostOptions,
  parseJsonEvent,
  postForText,
  postJson,
  probeUpstream,
  readSse,
  type UpstreamResponse,
  upstreamList,
} from '../http.js';
import {
  type CallOptions,
  type ChatCompletion,
  type ChatCompletionRequest,
  type LlmProvider,
  NATIVE_REQUEST,
  NATIVE_RESPONSE,
  type NativeRequest,
  type StreamEvent,
  type Timeouts,
} from '../types.js';
import {
  type AnthropicMessage,
  type AnthropicStreamEvent,
  AnthropicStreamTranslator,
  fromAnthropicMessage,
  streamError,
  toAnthropicRequest,
} from './translate.js';

export interface AnthropicProviderOptions {
  name?: string;
  apiKey: string;
  /** The API root, without `/v1` (a trailing `/v1` is tolerated): https://api.anthropic.com */
  baseUrl?: string;
  /** The `anthropic-version` header. */
  version?: string;
  /** Extra headers, e.g. `anthropic-beta`. */
  headers?: Record<string, string>;
}

const MAX_MODEL_PAGES = 10;

/**
 * Anthropic's Messages API behind the OpenAI chat-completions format: requests and answers are translated
 * (see translate.ts), streams are translated event by event as they arrive, never buffered.
 */
export class AnthropicProvider implements LlmProvider {
  readonly kind = 'anthropic' as const;
  readonly nativeProtocols = ['messages'] as const;
  readonly name: string;
  readonly #baseUrl: string;
  readonly #messagesUrl: URL;
  readonly #countUrl: URL;
  readonly #headers: Record<string, string>;

  constructor({
    name = 'anthropic',
    apiKey,
    baseUrl = 'https://api.anthropic.com',
    version = '2023-06-01',
    headers = {},
  }: AnthropicProviderOptions) {
    this.name = name;
    this.#baseUrl = baseUrl.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.#messagesUrl = new URL(joinUrl(this.#baseUrl, 'v1/messages'));
    this.#countUrl = new URL(joinUrl(this.#baseUrl, 'v1/messages/count_tokens'));
    this.#headers = { ...headers, 'x-api-key': apiKey, 'anthropic-version': version };
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const native = messagesRequest(body);
    const payload = native
      ? { ...native.body, model: body.model }
      : toAnthropicRequest({ ...body, stream: false }, this.name);
    const text = await this.#post(
      postForText,
      payload,
      options,
      options.timeouts.firstTokenMs,
      'application/json',
      native,
    );
    let message: AnthropicMessage | { type: 'error'; error?: { type?: string; message?: string } };
    try {
      message = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    if (message?.type === 'error') throw streamError(this.name, message.error, 'in its answer');
    if (message?.type !== 'message' || !Array.isArray(message.content)) {
      throw protocolError(this.name, 'the answer is not a message');
    }
    const completion = fromAnthropicMessage(message);
    // A Messages client gets Anthropic's answer as it came (thinking signatures, citations…).
    if (native) completion[NATIVE_RESPONSE] = message;
    return completion;
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const native = messagesRequest(body);
    const payload = native
      ? { ...native.body, model: body.model, stream: true }
      : toAnthropicRequest({ ...body, stream: true }, this.name);
    // Anthropic answers a stream's headers at once, but allow for a slow first token before them anyway.
    const response = await this.#post(
      postJson,
      payload,
      options,
      options.timeouts.connectMs + options.timeouts.firstTokenMs,
      'text/event-stream',
      native,
    );
    const translator = new AnthropicStreamTranslator(this.name, { model: body.model });
    return relayAnthropicStream(this.name, response, translator, { ...options, startedAt }, Boolean(native));
  }

  /**
   * Anthropic's own count of a Messages request's input tokens
   * (https://docs.anthropic.com/en/api/messages-count-tokens): the client's count_tokens body, model replaced.
   */
  async countTokens(body: ChatCompletionRequest, options: CallOptions): Promise<number> {
    const native = messagesRequest(body);
    if (!native) throw protocolError(this.name, 'count_tokens needs the client’s Messages request');
    const text = await this.#post(
      postForText,
      { ...native.body, model: body.model },
      options,
      options.timeouts.firstTokenMs,
      'application/json',
      native,
      this.#countUrl,
    );
    let answer: { input_tokens?: unknown };
    try {
      answer = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    if (typeof answer?.input_tokens !== 'number' || !Number.isFinite(answer.input_tokens)) {
      throw protocolError(this.name, 'the count_tokens answer has no input_tokens');
    }
    return answer.input_tokens;
  }

  /**
   * `colloquy doctor`'s check, the cheapest authenticated call: List Models
   * (https://docs.anthropic.com/en/api/models-list, `GET /v1/models` with `x-api-key` and `anthropic-version`),
   * one model asked for. Errors as the calls get them (a refused key is `upstream_auth_failed`).
   */
  async checkAccess(signal: AbortSignal): Promise<void> {
    const url = new URL(joinUrl(this.#baseUrl, 'v1/models'));
    url.searchParams.set('limit', '1');
    try {
      await probeUpstream({
        provider: this.name,
        url,
        headers: this.#headers,
        signal,
        secrets: [this.#headers['x-api-key'] ?? ''].filter(Boolean),
      });
    } catch (err) {
      throw err instanceof ProviderError ? anthropicHttpError(err, '') : err;
    }
  }

  async listModels(options: { signal: AbortSignal }): Promise<string[]> {
    const timeouts: Timeouts = {
      connectMs: LIST_TIMEOUT_MS,
      firstTokenMs: LIST_TIMEOUT_MS,
      idleMs: LIST_TIMEOUT_MS,
      totalMs: LIST_TIMEOUT_MS,
    };
    const ids: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < MAX_MODEL_PAGES; page++) {
      const url = new URL(joinUrl(this.#baseUrl, 'v1/models'));
      url.searchParams.set('limit', '1000');
      if (after) url.searchParams.set('after_id', after);
      let status: number;
      let text: string;
      let retryAfter: string | string[] | undefined;
      try {
        const response = await upstreamList(url, this.#headers, options.signal);
        status = response.statusCode;
        retryAfter = response.headers['retry-after'];
        text = await response.body.text();
      } catch (err) {
        throw mapTransportError(this.name, err, {
          signal: options.signal,
          timeouts,
          headersTimeoutMs: LIST_TIMEOUT_MS,
        });
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = { error: { message: text.slice(0, 500) || undefined } };
      }
      if (status !== 200) {
        throw anthropicHttpError(upstreamHttpError(this.name, status, parsed, retryAfter), '');
      }
      const list = parsed as { data?: { id?: unknown }[]; has_more?: boolean; last_id?: string | null };
      for (const model of list.data ?? []) if (typeof model.id === 'string') ids.push(model.id);
      if (!list.has_more || !list.last_id) break;
      after = list.last_id;
    }
    return ids;
  }

  async #post<T>(
    send: (options: PostOptions) => Promise<T>,
    payload: unknown,
    options: CallOptions,
    headersTimeoutMs: number,
    accept: string,
    native?: NativeRequest,
    url = this.#messagesUrl,
  ): Promise<T> {
    try {
      return await send({
        provider: this.name,
        url,
        headers: { ...this.#headers, ...clientHeaders(this.#headers, native), accept },
        body: JSON.stringify(payload),
        signal: options.signal,
        deadline: options.deadline,
        timeouts: options.timeouts,
        headersTimeoutMs,
      });
    } catch (err) {
      throw err instanceof ProviderError
        ? anthropicHttpError(err, (payload as { model: string }).model)
        : err;
    }
  }
}

/** The client's own Messages request, when it came by the Messages API (pass-through). */
function messagesRequest(body: ChatCompletionRequest): NativeRequest | undefined {
  const native = body[NATIVE_REQUEST];
  return native?.protocol === 'messages' ? native : undefined;
}

/**
 * The client headers a pass-through forwards (the documented allow-list; the client's key never): its
 * `anthropic-version`, and its `anthropic-beta` flags added to the configured ones.
 */
function clientHeaders(configured: Record<string, string>, native: NativeRequest | undefined) {
  const out: Record<string, string> = {};
  if (!native) return out;
  const version = native.headers['anthropic-version'];
  if (version) out['anthropic-version'] = version;
  const beta = native.headers['anthropic-beta'];
  if (beta) {
    const flags = [configured['anthropic-beta'] ?? '', beta].flatMap((v) => v.split(','));
    out['anthropic-beta'] = [...new Set(flags.map((f) => f.trim()).filter(Boolean))].join(',');
  }
  return out;
}

/**
 * Refines an upstream HTTP error from its Anthropic error type (`{type:'error', error:{type, message}}`,
 * which postJson keeps as `details.type`) into what Colloquy answers. Failures of the provider's own
 * credentials or account become 502s: relaying Anthropic's 401 would tell the client its own key is wrong.
 */
export function anthropicHttpError(err: ProviderError, model: string): ProviderError {
  const { provider, upstreamStatus, retryAfterMs } = err.details;
  if (err.details.kind !== 'upstream' || upstreamStatus === undefined) return err;
  const upstreamType = err.details.type ?? '';
  const make = (
    status: number,
    code: string,
    type: string,
    retryable: boolean,
    message = err.message,
    param: string | null = null,
  ) =>
    new ProviderError(message, {
      provider,
      upstreamStatus,
      status,
      code,
      type,
      param,
      retryable,
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      kind: 'upstream',
    });
  // postJson's stand-in when the body had no message: "upstream <name> answered HTTP <status>".
  const explain = (what: string) =>
    err.message.startsWith(`upstream ${provider} `)
      ? err.message
      : `upstream ${provider} ${what}: ${err.message}`;
  const kind = ANTHROPIC_ERROR_TYPES.has(upstreamType) ? upstreamType : (STATUS_TYPES[upstreamStatus] ?? '');
  switch (kind) {
    case 'invalid_request_error':
      return make(
        upstreamStatus >= 400 && upstreamStatus < 500 ? upstreamStatus : 400,
        /prompt is too long|context (window|length)|too many (input )?tokens/i.test(err.message)
          ? 'context_length_exceeded'
          : 'upstream_invalid_request',
        'invalid_request_error',
        false,
      );
    case 'authentication_error':
      return make(502, 'upstream_auth_failed', 'server_error', false, explain('rejected its API key'));
    case 'permission_error':
      return make(502, 'upstream_permission_denied', 'server_error', false, explain('refused the request'));
    case 'billing_error':
      return make(502, 'upstream_billing_error', 'server_error', false, explain('refused for billing'));
    case 'not_found_error':
      return /model/i.test(err.message)
        ? make(
            404,
            'model_not_found',
            'invalid_request_error',
            false,
            `The model \`${model}\` does not exist or you do not have access to it (${provider}: ${err.message}).`,
            'model',
          )
        : make(404, 'not_found', 'invalid_request_error', false);
    case 'request_too_large':
      return make(413, 'request_too_large', 'invalid_request_error', false);
    case 'rate_limit_error':
      return make(429, 'upstream_rate_limited', 'rate_limit_error', true);
    case 'api_error':
      return make(502, 'upstream_error', 'server_error', true);
    case 'overloaded_error':
      return make(503, 'upstream_overloaded', 'server_error', true, explain('is overloaded'));
    case 'timeout_error':
      return make(504, 'upstream_timeout', 'server_error', true);
    default:
      return err;
  }
}

const ANTHROPIC_ERROR_TYPES = new Set([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'billing_error',
  'not_found_error',
  'request_too_large',
  'rate_limit_error',
  'api_error',
  'overloaded_error',
  'timeout_error',
]);

/** Anthropic's documented status for each error type, for bodies that are not Anthropic's (a proxy's). */
const STATUS_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

// Module-level, like every stream generator (see relayOpenAiStream).
export async function* relayAnthropicStream(
  provider: string,
  response: UpstreamResponse,
  translator: AnthropicStreamTranslator,
  options: CallOptions & { startedAt: number },
  passThrough = false,
): AsyncGenerator<StreamEvent> {
  for await (const message of readSse(provider, response.body, options)) {
    const event = parseJsonEvent<AnthropicStreamEvent>(provider, message.data);
    if (!event || typeof event !== 'object')
      throw protocolError(provider, 'a stream event that is not an object');
    if (typeof event.type !== 'string' && message.event) (event as { type: string }).type = message.event;
    const chunks = translator.push(event);
    if (passThrough) {
      // Every upstream event is relayed as it came; its translation (usage, text) rides along for the
      // ledger and budgets. An event with no translation (ping, block stop) still carries itself.
      const native = { event: event.type, data: message.data };
      const last = chunks.pop() ?? { ...translator.emptyChunk() };
      for (const chunk of chunks) yield { chunk };
      yield { chunk: last, native };
    } else for (const chunk of chunks) yield { chunk };
    if (translator.done) return;
  }
  throw protocolError(provider, 'the stream ended without message_stop');
}
