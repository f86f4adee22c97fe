import { setTimeout as sleep } from 'node:timers/promises';
import { BrokenCircuitError, CircuitState } from 'cockatiel';
import type { Logger } from '../../core/logger.js';
import { CallDeadline } from '../call-deadline.js';
import { ProviderError } from '../errors.js';
import { carryRawRequest } from '../raw-request.js';
import type { CallOptions, LlmProvider, NativeProtocol, StreamEvent, Timeouts } from '../types.js';
import { DeploymentHealth, type RouteHealth } from './deployment-health.js';
import { endpointsOf, type ModelEndpoint } from './endpoints.js';
import { type Deployment, type ModelRouter, orderDeployments } from './model-router.js';
import type {
  ChatGateway,
  CompletionResult,
  EmbedRequest,
  EmbedResult,
  GatewayRequest,
  RouteInfo,
  StreamResult,
} from './types.js';

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
  #known = new Set<string>();
  readonly #byProvider = new Map<string, { at: number; list: Promise<Set<string>> }>();

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

  /** The client endpoints that serve a model (GET /v1/models), without making a deployment for the name. */
  modelEndpoints(model: string): ModelEndpoint[] {
    const targets = this.router.aliases.includes(model)
      ? (this.router.resolve(model)?.deployments ?? [])
      : [this.router.target(model)].filter((t) => t !== undefined);
    return endpointsOf(targets);
  }

  nativeSupport(model: string, protocol: NativeProtocol): 'all' | 'some' | 'none' {
    const deployments = this.router.resolve(model)?.deployments ?? [];
    // Asked on every Responses and Messages request: counted without a filtered copy.
    let native = 0;
    for (const d of deployments) if (d.provider.nativeProtocols?.includes(protocol)) native++;
    return native === 0 ? 'none' : native === deployments.length ? 'all' : 'some';
  }

  providerKinds(model: string): string[] {
    return this.router.resolve(model)?.deployments.map((d) => d.provider.kind) ?? [];
  }

  async complete(request: GatewayRequest): Promise<CompletionResult> {
    const startedAt = performance.now();
    const { value, route, sentAt, release } = await this.#withRetries(
      request,
      (deployment, body, options) => deployment.provider.complete(body, options),
      undefined,
      true,
    );
    release();
    // One clock read for the attempt's outcome and its latency (the success is recorded here, not deferred).
    const now = performance.now();
    this.health.attempt(route.deployment, true, now);
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
      undefined,
      true,
    );
    const firstChunkAt = performance.now();
    const ttftMs = firstChunkAt - startedAt;
    this.health.timeToFirstToken(route.deployment, firstChunkAt - sentAt, firstChunkAt);
    return {
      route,
      ttftMs,
      events: relayAttempt(value, release, this.health, route.deployment, sentAt),
      cancel: async () => {
        release();
        await value.iterator.return?.().catch(() => {});
      },
    };
  }

  /**
   * Embeddings, with the chat path's aliases, weights, breakers, retries and fallbacks, over the deployments
   * whose provider has an embeddings API: a chat-only deployment of the route is skipped, not failed.
   */
  async embed(request: EmbedRequest): Promise<EmbedResult> {
    const startedAt = performance.now();
    const { value, route, sentAt, release } = await this.#withRetries(
      request,
      (deployment, body, options) => deployment.provider.embed!(body, options),
      (deployment) => typeof deployment.provider.embed === 'function',
    );
    release();
    const now = performance.now();
    this.health.latency(route.deployment, now - sentAt, now);
    return { response: value, route, latencyMs: now - startedAt };
  }

  async countTokens(request: GatewayRequest): Promise<{ inputTokens: number; route: RouteInfo } | undefined> {
    const counts = (deployment: Deployment) => typeof deployment.provider.countTokens === 'function';
    if (!this.router.resolve(request.body.model)?.deployments.some(counts)) return undefined;
    const { value, route, release } = await this.#withRetries(
      request,
      (deployment, body, options) => deployment.provider.countTokens!(body, options),
      counts,
    );
    release();
    return { inputTokens: value, route };
  }

  async listModels(): Promise<{ id: string; owned_by: string }[]> {
    if (!this.#models || Date.now() - this.#models.at > MODELS_CACHE_MS) {
      this.#models = { at: Date.now(), list: this.#fetchModels() };
    }
    return this.#models.list;
  }

  /**
   * One model a client may ask for, or undefined: what the listing holds, an alias, or a name routed to a
   * provider whose own listing has it (e.g. `claude-*` or `anthropic/claude-*` on anthropic). A name that
   * would only be passed through to the default upstream on the chance it exists is not a model (GET
   * /v1/models/<anything> answered 200, issue 19).
   */
  async findModel(model: string): Promise<{ id: string; owned_by: string } | undefined> {
    const listed = await this.listModels();
    const found = listed.find((m) => m.id === model);
    if (found) return found;
    const target = this.router.target(model);
    if (!target?.provider.listModels) return undefined;
    const upstream = await this.#providerModels(target.provider);
    return upstream.has(target.model) ? { id: model, owned_by: target.provider.name } : undefined;
  }

  /**
   * The last listing's model names (aliases included): a synchronous answer to "is this a model we know",
   * for labels that must not echo whatever a client typed (the usage ledger). Empty until first listed.
   */
  isKnownModel(model: string): boolean {
    // The first question starts a listing in the background, so later answers know the upstream's models.
    if (!this.#models) void this.listModels().catch(() => {});
    return this.router.aliases.includes(model) || this.#known.has(model);
  }

  #providerModels(provider: LlmProvider): Promise<Set<string>> {
    const cached = this.#byProvider.get(provider.name);
    if (cached && Date.now() - cached.at <= MODELS_CACHE_MS) return cached.list;
    const list = (provider.listModels?.({ signal: AbortSignal.timeout(5_000) }) ?? Promise.resolve([])).then(
      (ids) => new Set(ids),
      (err) => {
        this.logger.warn({ err, provider: provider.name }, 'could not list upstream models');
        // Not cached: the next lookup asks again.
        this.#byProvider.delete(provider.name);
        return new Set<string>();
      },
    );
    this.#byProvider.set(provider.name, { at: Date.now(), list });
    return list;
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
    this.#known = new Set(seen.keys());
    return [...seen].map(([id, owned_by]) => ({ id, owned_by }));
  }

  async #withRetries<T, B extends GatewayRequest['body'] | EmbedRequest['body']>(
    request: Omit<GatewayRequest, 'body'> & { body: B },
    run: (deployment: Deployment, body: B, options: CallOptions) => Promise<T>,
    /** Which of the route's deployments can serve this kind of call (all, for chat). */
    serves?: (deployment: Deployment) => boolean,
    /**
     * The caller records the success: a stream's attempt succeeds only when it ends well (relayAttempt), a
     * completion's with the clock read it takes for its latency.
     */
    deferSuccess = false,
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
    const usable = serves ? resolved.deployments.filter(serves) : resolved.deployments;
    if (usable.length === 0) {
      throw new ProviderError(
        `The model \`${requested}\` is not served by any provider with an embeddings API (${[...new Set(resolved.deployments.map((d) => d.provider.name))].join(', ')}).`,
        {
          provider: 'colloquy',
          status: 400,
          code: 'model_not_supported',
          type: 'invalid_request_error',
          param: 'model',
          retryable: false,
        },
      );
    }
    const candidates = orderDeployments(usable);
    const { timeouts, retries } = this.policy;
    // The clock is read once for the first attempt's deadline and its timer.
    let now: number | undefined = Date.now();
    const deadline = now + timeouts.totalMs;
    let attempts = 0;
    let index = 0;
    let lastError: ProviderError | undefined;

    while (attempts <= retries) {
      // An open breaker rejects without calling (BrokenCircuitError) until its cooldown has passed.
      const deployment = candidates[index];
      if (!deployment) break;
      attempts++;
      // The whole call's deadline and the provider's headers deadline share one timer, released once the
      // call is over (a stream: when it ends), so no timer outlives its request.
      const call = new CallDeadline(request.signal, deadline, now ?? Date.now(), timeouts.firstTokenMs);
      const release = call.release;
      now = undefined;
      const sentAt = performance.now();
      const breaker = deployment.breaker;
      // A closed breaker (every attempt while the upstream is healthy) is only told the outcome: no
      // execute() frame around the call. Its other states go through execute().
      let toldBreaker = !breaker.closed;
      try {
        const options: CallOptions = {
          signal: call.signal,
          deadline: call,
          timeouts,
          requestId: request.requestId,
        };
        const value = toldBreaker
          ? await breaker.execute(() => run(deployment, attemptBody(request.body, deployment.model), options))
          : await run(deployment, attemptBody(request.body, deployment.model), options);
        if (!toldBreaker) {
          toldBreaker = true;
          breaker.succeeded();
        }
        const route: RouteInfo = {
          requestedModel: requested,
          provider: deployment.provider.name,
          deployment: deployment.id,
          upstreamModel: deployment.model,
          attempts,
          fallback: deployment !== candidates[0],
        };
        if (!deferSuccess) this.health.attempt(deployment.id, true);
        return { value, route, sentAt, release };
      } catch (err) {
        if (!toldBreaker) breaker.failed(err);
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

/** The body an attempt sends: the client's with the deployment's model; it keeps the client's bytes. */
function attemptBody<B extends object>(body: B, model: string): B & { model: string } {
  const copy = { ...body, model };
  carryRawRequest(body, copy);
  return copy;
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
  // The attempt's outcome for the Providers page: a stream that fails mid-way failed (its breaker and
  // retries saw a success at the first chunk, but the user got a broken answer); one the client stopped did not.
  let ok = true;
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
  } catch (err) {
    if (err instanceof ProviderError && err.details.kind !== 'cancelled') ok = false;
    throw err;
  } finally {
    health.attempt(deployment, ok);
    release();
    await iterator.return?.().catch(() => {});
  }
}
