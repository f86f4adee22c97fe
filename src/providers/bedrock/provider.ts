import { ProviderError, protocolError } from '../errors.js';
import { joinUrl, postForText, postJson, type UpstreamResponse, withoutSecrets } from '../http.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  LlmProvider,
  StreamEvent,
} from '../types.js';
import { AwsCredentials } from './auth.js';
import { embedWithBedrock } from './embeddings.js';
import { bedrockErrorMapper } from './errors.js';
import {
  type ConverseResponse,
  ConverseStreamTranslator,
  fromConverseResponse,
  toConverseRequest,
} from './translate.js';

export interface BedrockProviderOptions {
  name?: string;
  /** The region requests are signed for and, without a base URL, sent to. */
  region: string;
  /** https://bedrock-runtime.{region}.amazonaws.com by default; a proxy, VPC endpoint or test server. */
  baseUrl?: string | undefined;
  /** A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK), sent as `Authorization: Bearer`; replaces SigV4. */
  apiKey?: string | undefined;
  /** SigV4 credentials; without them (and without an API key), the AWS SDK's standard chain. */
  credentials?: AwsCredentials | undefined;
  /** Tests: the signing clock. */
  now?: () => Date;
}

/**
 * AWS Bedrock through the Converse and ConverseStream APIs (every Bedrock chat model, one shape), signed with
 * SigV4 or a Bedrock API key. Model names are model ids, inference-profile ids or ARNs
 * (`bedrock/amazon.nova-lite-v1:0`, `bedrock/arn:aws:bedrock:…:inference-profile/us.anthropic…`), sent
 * percent-encoded as one path segment.
 */
export class BedrockProvider implements LlmProvider {
  readonly kind = 'bedrock' as const;
  readonly name: string;
  readonly #root: string;
  readonly #region: string;
  readonly #apiKey: string | undefined;
  readonly #credentials: AwsCredentials | undefined;
  /**
   * The signer and the event-stream decoder (@smithy/*, @aws-crypto: ~2–3 MiB of heap) are imported when a
   * provider is made, at start-up when Bedrock is configured, and never by a server without it.
   */
  readonly #sign: Promise<Signer> | undefined;
  readonly #eventStreams: Promise<typeof import('./event-stream.js')>;
  readonly #now: (() => Date) | undefined;
  readonly #mapError;

  constructor(options: BedrockProviderOptions) {
    this.name = options.name ?? 'bedrock';
    this.#region = options.region;
    this.#root = (options.baseUrl ?? `https://bedrock-runtime.${options.region}.amazonaws.com`).replace(
      /\/+$/,
      '',
    );
    this.#apiKey = options.apiKey;
    this.#credentials = options.apiKey ? undefined : (options.credentials ?? AwsCredentials.fromConfig({}));
    const credentials = this.#credentials;
    this.#sign =
      credentials &&
      settledLater(import('./signer.js').then((m) => m.createSigner(credentials, this.#region)));
    this.#eventStreams = settledLater(import('./event-stream.js'));
    this.#now = options.now;
    this.#mapError = bedrockErrorMapper(this.name);
  }

  /** `POST /model/{modelId}/{operation}`, the model id encoded as one segment (`:` → %3A, `/` → %2F). */
  url(modelId: string, operation: 'converse' | 'converse-stream' | 'invoke'): URL {
    return new URL(joinUrl(this.#root, `model/${encodeURIComponent(modelId)}/${operation}`));
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const payload = JSON.stringify(toConverseRequest(body, this.name));
    const url = this.url(body.model, 'converse');
    const text = await postForText({
      ...(await this.#request(url, payload, 'application/json')),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.firstTokenMs,
    });
    let response: ConverseResponse;
    try {
      response = JSON.parse(text);
    } catch {
      throw protocolError(this.name, `the answer is not JSON: ${text.slice(0, 100)}`);
    }
    if (!response?.output?.message) throw protocolError(this.name, 'the answer has no output.message');
    return fromConverseResponse(this.name, response, body.model, `chatcmpl-${options.requestId}`);
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const startedAt = Date.now();
    const payload = JSON.stringify(toConverseRequest(body, this.name));
    const url = this.url(body.model, 'converse-stream');
    const response = await postJson({
      ...(await this.#request(url, payload, 'application/vnd.amazon.eventstream')),
      signal: options.signal,
      deadline: options.deadline,
      timeouts: options.timeouts,
      headersTimeoutMs: options.timeouts.connectMs + options.timeouts.firstTokenMs,
    });
    const translator = new ConverseStreamTranslator({
      model: body.model,
      id: `chatcmpl-${options.requestId}`,
    });
    const { readConverseStream } = await this.#eventStreams;
    return relayConverseStream(
      readConverseStream,
      this.name,
      response,
      translator,
      { ...options, startedAt },
      this.#secrets(),
    );
  }

  async embed(body: EmbeddingRequest, options: CallOptions): Promise<EmbeddingResponse> {
    return embedWithBedrock(this.name, body, options, async (payload) => {
      const url = this.url(body.model, 'invoke');
      return postForText({
        ...(await this.#request(url, payload, 'application/json')),
        signal: options.signal,
        deadline: options.deadline,
        timeouts: options.timeouts,
        headersTimeoutMs: options.timeouts.firstTokenMs,
      });
    });
  }

  /**
   * Bedrock Runtime has nothing to list: the doctor sends Converse an empty request for a model that does not
   * exist. A ValidationException or ResourceNotFoundException proves the endpoint and that the signature
   * and credentials were accepted (AWS authenticates before it validates); 401/403 says what is wrong.
   */
  async checkAccess(signal: AbortSignal): Promise<void> {
    const seconds = 10_000;
    try {
      await postForText({
        ...(await this.#request(
          this.url('colloquy-doctor-probe', 'converse'),
          '{"messages":[]}',
          'application/json',
        )),
        signal,
        timeouts: { connectMs: seconds, firstTokenMs: seconds, idleMs: seconds, totalMs: seconds },
        headersTimeoutMs: seconds,
      });
    } catch (err) {
      const status = err instanceof ProviderError ? err.details.upstreamStatus : undefined;
      if (status === 400 || status === 404) return;
      throw err;
    }
  }

  async #request(url: URL, body: string, accept: string) {
    const base = { 'content-type': 'application/json', accept };
    let headers: Record<string, string>;
    if (this.#apiKey) headers = { ...base, authorization: `Bearer ${this.#apiKey}` };
    else {
      try {
        headers = await (await this.#sign!)({ url, headers: base, body }, this.#now?.());
      } catch (err) {
        throw withoutSecrets(credentialsError(this.name, err), this.#secrets());
      }
      // undici sets Host itself, from the URL that was signed.
      delete headers.host;
    }
    return { provider: this.name, url, headers, body, mapError: this.#mapError, secrets: this.#secrets() };
  }

  #secrets(): string[] {
    return this.#apiKey ? [this.#apiKey] : (this.#credentials?.secrets() ?? []);
  }
}

type Signer = ReturnType<typeof import('./signer.js').createSigner>;

/** A module loading ahead of its first use: a failure is the first use's to report, never an unhandled one. */
function settledLater<T>(loading: Promise<T>): Promise<T> {
  loading.catch(() => {});
  return loading;
}

/** No credentials in the chain (or a profile that does not resolve): Colloquy's configuration, a 502. */
function credentialsError(provider: string, err: unknown): ProviderError {
  return new ProviderError(
    `no AWS credentials for upstream ${provider}: ${(err as Error)?.message ?? err} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity, or AWS_BEARER_TOKEN_BEDROCK)`,
    {
      provider,
      status: 502,
      code: 'upstream_auth_failed',
      type: 'server_error',
      param: null,
      retryable: false,
      kind: 'upstream',
    },
  );
}

// Module-level, like every stream generator (see relayOpenAiStream).
async function* relayConverseStream(
  readConverseStream: typeof import('./event-stream.js').readConverseStream,
  provider: string,
  response: UpstreamResponse,
  translator: ConverseStreamTranslator,
  options: CallOptions & { startedAt: number },
  secrets: string[],
): AsyncGenerator<StreamEvent> {
  try {
    for await (const event of readConverseStream(provider, response.body, options)) {
      // A guardrail's stopReason arrives after its text has streamed: the stream ends with finish_reason
      // content_filter (as Azure's streams do), where complete() answers 400 content_filtered.
      for (const chunk of translator.push(event)) yield { chunk };
      if (translator.done) return;
    }
  } catch (err) {
    throw err instanceof ProviderError ? withoutSecrets(err, secrets) : err;
  }
  if (!translator.finished) throw protocolError(provider, 'the stream ended without messageStop');
  for (const chunk of translator.end()) yield { chunk };
}
