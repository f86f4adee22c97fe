import type { Principal } from '../../features/auth/principal.js';
import type {
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  EmbeddingResponse,
  NativeProtocol,
  StreamEvent,
  Usage,
} from '../types.js';
import type { RouteHealth } from './deployment-health.js';

/** Where a call was served: recorded in usage, logs and metrics. */
export interface RouteInfo {
  /** The model name the client asked for (an alias or an upstream name). */
  requestedModel: string;
  provider: string;
  /** `provider/upstream-model`, unique per deployment. */
  deployment: string;
  upstreamModel: string;
  /** Upstream attempts made, the successful one included. */
  attempts: number;
  /** True when a deployment other than the first choice served the call. */
  fallback: boolean;
}

export interface GatewayRequest {
  body: ChatCompletionRequest;
  requestId: string;
  /** Aborts the upstream call (client gone, shutdown, explicit cancel). */
  signal?: AbortSignal;
  /** Who asks, for rate limits and budgets; absent for internal calls. */
  caller?: { principal: Principal; ip?: string | undefined } | undefined;
  /** Limits already checked and reserved by `admitStream` for this call: not checked again. */
  admission?: StreamAdmission | undefined;
  /** Where the call comes from beyond the caller: the conversation's assistant (its guardrails apply). */
  context?: { assistantId?: string | null | undefined; conversationId?: string | undefined } | undefined;
}

/**
 * A stream's rate limits and budget, checked and reserved ahead of the call (conversations refuse before
 * they store anything). Hand it to `stream()` in the request, or `release()` it when the call never comes.
 */
export interface StreamAdmission {
  /** Rate-limit headers (X-RateLimit-*) for the answer. */
  readonly headers: Record<string, string>;
  release(): Promise<void>;
  /**
   * What another process needs to settle the reservation if this one dies mid-stream (JSON), or undefined
   * when nothing would outlive it. Handed back to `settleAbandoned`.
   */
  readonly ticket?: unknown;
}

export interface CompletionResult {
  /** Headers to send with the answer (X-RateLimit-*). */
  headers?: Record<string, string>;
  completion: ChatCompletion;
  route: RouteInfo;
  latencyMs: number;
}

export interface StreamResult {
  /** Headers to send with the answer (X-RateLimit-*). */
  headers?: Record<string, string>;
  route: RouteInfo;
  /** Milliseconds from the call until the first chunk arrived from the upstream. */
  ttftMs: number;
  /**
   * The chunks, the first one included. Retries and fallbacks happen only before the first chunk, so once
   * this resolves, a failure surfaces as a ProviderError thrown while iterating.
   */
  events: AsyncIterable<StreamEvent>;
  /**
   * Releases a stream nobody will read (a guardrail refused it before its first byte): its upstream call and
   * deadline end now. Returning `events` would not do it: a generator never started skips its `finally`.
   */
  cancel?(): Promise<void>;
}

/** An embeddings call (POST /v1/embeddings): the same routing, limits and caller as a chat call. */
export interface EmbedRequest extends Omit<GatewayRequest, 'body'> {
  body: EmbeddingRequest;
}

export interface EmbedResult {
  /** Headers to send with the answer (X-RateLimit-*). */
  headers?: Record<string, string>;
  response: EmbeddingResponse;
  route: RouteInfo;
  latencyMs: number;
}

/** What features (the /v1 API, conversations) call to reach a model. */
export interface ChatGateway {
  complete(request: GatewayRequest): Promise<CompletionResult>;
  stream(request: GatewayRequest): Promise<StreamResult>;
  /**
   * Checks and reserves the limits a `stream(request)` would (429 rate_limited / budget_exceeded otherwise);
   * undefined when nothing limits the caller. Absent on gateways without limits.
   */
  admitStream?(request: GatewayRequest): Promise<StreamAdmission | undefined>;
  /** Settles an admission's `ticket` whose stream's process died, to the usage its stream is estimated at. */
  settleAbandoned?(ticket: unknown, usage: Usage, model: string): Promise<void>;
  /**
   * Embeddings through the model's route, on the deployments whose provider has an embeddings API (a 400
   * `model_not_supported` when none has).
   */
  embed?(request: EmbedRequest): Promise<EmbedResult>;
  /**
   * The upstream's own input-token count (POST /v1/messages/count_tokens), from the first of the route's
   * deployments that can count (Anthropic's); undefined when none can, or when the count must not leave
   * Colloquy (input guardrails apply): the caller estimates then.
   */
  countTokens?(request: GatewayRequest): Promise<{ inputTokens: number; route: RouteInfo } | undefined>;
  /** Model ids a client may ask for: configured aliases plus what the default upstream reports. */
  listModels(): Promise<{ id: string; owned_by: string }[]>;
  /** Whether a model name routes anywhere (404 `model_not_found` otherwise). */
  hasModel(model: string): boolean;
  /** One model that exists (listed, an alias, or listed by the provider it routes to); else undefined. */
  findModel?(model: string): Promise<{ id: string; owned_by: string } | undefined>;
  /** Whether a name is one the gateway knows (alias or last listing), without waiting: for ledger labels. */
  isKnownModel?(model: string): boolean;
  /**
   * The provider kinds of a model's deployments (empty when it routes nowhere): whether a client's request
   * may only ever reach upstreams that speak its own protocol (issue 20's pass-through).
   */
  providerKinds?(model: string): string[];
  /**
   * Whether a model's deployments speak a client protocol themselves (pass-through): all of them, some
   * (a fallback may translate), or none.
   */
  nativeSupport?(model: string, protocol: NativeProtocol): 'all' | 'some' | 'none';
  /** The client endpoints that serve a model (`chat.completions`, `messages`, `responses`, `embeddings`), for /v1/models. */
  modelEndpoints?(model: string): string[];
  /** Breaker state per deployment (0 closed, 1 half-open, 2 open), for metrics and health views. */
  deploymentStates?(): { deployment: string; provider: string; state: number }[];
  /** Routes and their deployments with breaker state and recent error ratio and latency (this process). */
  providerHealth?(): RouteHealth[];
  /** Told about every failed upstream attempt, for metrics. */
  onAttemptFailed?: ((provider: string, code: string) => void) | undefined;
}
