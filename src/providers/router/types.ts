import type { Principal } from '../../features/auth/principal.js';
import type { ChatCompletion, ChatCompletionRequest, StreamEvent } from '../types.js';
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
}

/** What features (the /v1 API, conversations) call to reach a model. */
export interface ChatGateway {
  complete(request: GatewayRequest): Promise<CompletionResult>;
  stream(request: GatewayRequest): Promise<StreamResult>;
  /** Model ids a client may ask for: configured aliases plus what the default upstream reports. */
  listModels(): Promise<{ id: string; owned_by: string }[]>;
  /** Whether a model name routes anywhere (404 `model_not_found` otherwise). */
  hasModel(model: string): boolean;
  /** Breaker state per deployment (0 closed, 1 half-open, 2 open), for metrics and health views. */
  deploymentStates?(): { deployment: string; provider: string; state: number }[];
  /** Routes and their deployments with breaker state and recent error ratio and latency (this process). */
  providerHealth?(): RouteHealth[];
  /** Told about every failed upstream attempt, for metrics. */
  onAttemptFailed?: ((provider: string, code: string) => void) | undefined;
}
