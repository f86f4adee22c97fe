import { setTimeout as sleep } from 'node:timers/promises';
import { BrokenCircuitError, CircuitState } from 'cockatiel';
import type { Logger } from '../../core/logger.js';
import { ProviderError } from '../errors.js';
import { deadlineSignal } from '../http.js';
import type { CallOptions, ChatCompletionRequest, StreamEvent, Timeouts } from '../types.js';
import { DeploymentHealth, type RouteHealth } from './deployment-health.js';
import { type Deployment, type ModelRouter, orderDeployments } from './model-router.js';
import type { ChatGateway, CompletionResult, GatewayRequest, RouteInfo, StreamResult } from './types.js';

export interface GatewayPolicy {
  timeouts: Timeouts;
  /** Extra attempts per request, each on the same deployment (after a backoff) or a fallback one. */
  retries: number;
  backoff: { initialMs: number; maxMs: number };
  /** A Retry-After longer than this is not waited for: the next deployment is tried, or the error relayed. */
  maxRetryAfterMs: number;
}

const MODELS_CACHE_MS = 60_000;

/**
 * Calls a model through its route: weighted choice within a priority, a breaker per deployment, retries
 * with exponential backoff and jitter (honouring Retry-After) and fallbacks — all before the first byte
 * reaches the client. Attempts per request never exceed 1 + retries.
 */
export class RoutingGateway implements ChatGateway {
  #models: { at: number; list: Promise<{ id: string; owned_by: string }[]> } | undefined;

  /** Told about every failed attempt (metrics). */
  onAttemptFailed: ((provider: string, code: string) => void) | undefined;
  /** Recent attempts per deployment (this process only), for the console's Providers page. */
  readonly health = new DeploymentHealth();

  constructor(
    private readonly router: ModelRouter,
    private readonly policy: GatewayPolicy,
    private readonly logger: Logger,
  ) {}

  /** Breaker state per deployment: 0 closed, 1 half-open, 2 open (isolated counts as open). */
  deploymentStates(): { deployment: string; provider: string; state: number }[] {
    return this.router.deployments().map((d) => ({
      deployment: d.id,
      provider: d.provider.name,
      state: d.breaker.state === CircuitState.Closed ? 0 : d.breaker.state === CircuitState.HalfOpen ? 1 : 2,
    }));
  }

  providerHealth(): RouteHealth[] {
    return this.health.report(this.router);
  }

  hasModel(model: string): boolean {
    return this.router.resolve(model) !== undefined;
  }

  async complete(request: GatewayRequest): Promise<CompletionResult> {
    const startedAt = performance.now();
    const { value, route, sentAt, release } = await this.#withRetries(request, (deployment, body, options) =>
      deployment.provider.complete(body, options),
    );
    release();
    const now = performance.now();
    this.health.latency(route.deployment, now - sentAt, now);
    return { completion: value, route, latencyMs: now - startedAt };
  }

  async stream(request: GatewayRequest): Promise<StreamResult> {
    const startedAt = performance.now();
    const { value, route, sentAt, release } = await this.#withRetries(
      request,
      async (deployment, body, options) => {
        const iterator = (await deployment.provider.stream(body, options))[Symbol.asyncIterator]();
        try {
          // The first chunk is part of the attempt: an upstream that accepts and then fails at once is retried.
          const first = await iterator.next();
          return { iterator, first };
        } catch (err) {
          await iterator.return?.().catch(() => {});
          throw err;
        }
      },
    );
    const firstChunkAt = performance.now();
    const ttftMs = firstChunkAt - startedAt;
    this.health.timeToFirstToken(route.deployment, firstChunkAt - sentAt, firstChunkAt);
    return { route, ttftMs, events: relayAttempt(value, release, this.health, route.deployment, sentAt) };
  }

  async listModels(): Promise<{ id: string; owned_by: string }[]> {
    if (!this.#models || Date.now() - this.#models.at > MODELS_CACHE_MS) {
      this.#models = { at: Date.now(), list: this.#fetchModels() };
    }
    return this.#models.list;
  }

  async #fetchModels() {
    const seen = new Map<string, string>();
    for (const alias of this.router.aliases) seen.set(alias, 'colloquy');
    const fallback = this.router.defaultProvider;
    for (const provider of this.router.providers) {
      if (provider.kind !== 'demo' && provider !== fallback) continue;
      try {
        const ids = (await provider.listModels?.({ signal: AbortSignal.timeout(5_000) })) ?? [];
        for (const id of ids) if (!seen.has(id)) seen.set(id, provider.name);
      } catch (err) {
        this.logger.warn({ err, provider: provider.name }, 'could not list upstream models');
      }
    }
    return [...seen].map(([id, owned_by]) => ({ id, owned_by }));
  }

  async #withRetries<T>(
    request: GatewayRequest,
    run: (deployment: Deployment, body: ChatCompletionRequest, options: CallOptions) => Promise<T>,
  ): Promise<{ value: T; route: RouteInfo; sentAt: number; release: () => void }> {
    const requested = request.body.model;
    const resolved = this.router.resolve(requested);
    if (!resolved) {
      throw new ProviderError(`The model \`${requested}\` does not exist or you do not have access to it.`, {
        provider: 'colloquy',
        status: 404,
        code: 'model_not_found',
        type: 'invalid_request_error',
        param: 'model',
        retryable: false,
      });
    }
    const candidates = orderDeployments(resolved.deployments);
    const { timeouts, retries } = this.policy;
    const deadline = Date.now() + timeouts.totalMs;
    let attempts = 0;
    let index = 0;
    let lastError: ProviderError | undefined;

    while (attempts <= retries) {
      // An open breaker rejects without calling (BrokenCircuitError) until its cooldown has passed.
      const deployment = candidates[index];
      if (!deployment) break;
      attempts++;
      // Released once the call is over (a stream: when it ends), so no timer outlives its request.
      const {
        signal,
        abort,
        clear: release,
      } = deadlineSignal(request.signal, Math.max(1, deadline - Date.now()));
      const sentAt = performance.now();
      try {
        const value = await deployment.breaker.execute(() =>
          run(
            deployment,
            { ...request.body, model: deployment.model },
            { signal, abort, timeouts, requestId: request.requestId },
          ),
        );
        const route: RouteInfo = {
          requestedModel: requested,
          provider: deployment.provider.name,
          deployment: deployment.id,
          upstreamModel: deployment.model,
          attempts,
          fallback: deployment !== candidates[0],
        };
        this.health.attempt(deployment.id, true);
        return { value, route, sentAt, release };
      } catch (err) {
        release();
        if (err instanceof BrokenCircuitError) {
          attempts--; // skipped, not attempted: a half-open breaker lets one probe through at a time
          index++;
          continue;
        }
        if (err instanceof ProviderError && err.details.kind !== 'cancelled') {
          this.onAttemptFailed?.(deployment.provider.name, err.details.code);
          // Only failures that count against the breaker say something about the upstream's health.
          if (err.retryable) this.health.attempt(deployment.id, false);
        }
        if (!(err instanceof ProviderError) || !err.retryable || request.signal?.aborted) throw err;
        lastError = err;
        this.logger.warn(
          {
            requestId: request.requestId,
            deployment: deployment.id,
            attempt: attempts,
            code: err.details.code,
          },
          `upstream attempt failed: ${err.message}`,
        );
        if (attempts > retries) break;
        if (index + 1 < candidates.length) {
          index++; // fall back at once: another upstream needs no backoff
          continue;
        }
        const wait = err.details.retryAfterMs ?? this.#backoff(attempts);
        if (wait > this.policy.maxRetryAfterMs || Date.now() + wait >= deadline) break;
        await sleep(wait, undefined, request.signal ? { signal: request.signal } : {}).catch(() => {});
        if (request.signal?.aborted) throw err;
      }
    }
    if (lastError) throw lastError;
    throw new ProviderError(`no healthy deployment for \`${requested}\`: every circuit is open`, {
      provider: 'colloquy',
      status: 503,
      code: 'no_healthy_deployment',
      type: 'server_error',
      retryable: true,
      retryAfterMs: 5_000,
    });
  }

  #backoff(attempt: number): number {
    const { initialMs, maxMs } = this.policy.backoff;
    const ceiling = Math.min(maxMs, initialMs * 2 ** (attempt - 1));
    return Math.round(ceiling * (0.5 + Math.random() / 2));
  }
}

// The attempt's chunks, the already-read first one included; its deadline is released when the stream ends.
// Module-level, like every stream generator (see relayOpenAiStream).
async function* relayAttempt(
  attempt: { iterator: AsyncIterator<StreamEvent>; first: IteratorResult<StreamEvent> },
  release: () => void,
  health: DeploymentHealth,
  deployment: string,
  sentAt: number,
): AsyncGenerator<StreamEvent> {
  const { iterator } = attempt;
  try {
    const first = attempt.first;
    if (first.done) return;
    yield first.value;
    while (true) {
      const next = await iterator.next();
      if (next.done) {
        health.latency(deployment, performance.now() - sentAt);
        return;
      }
      yield next.value;
    }
  } finally {
    release();
    await iterator.return?.().catch(() => {});
  }
}
