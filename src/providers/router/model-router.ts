import type { RoutingFile } from '../../config/routing-file.js';
import { ProviderError } from '../errors.js';
import type { LlmProvider } from '../types.js';
import { DeploymentBreaker } from './breaker.js';

export interface Deployment {
  /** `provider/upstream-model` */
  id: string;
  provider: LlmProvider;
  model: string;
  weight: number;
  priority: number;
  breaker: DeploymentBreaker;
}

export interface Route {
  name: string;
  deployments: Deployment[];
  contextWindow: number | undefined;
}

export interface BreakerSettings {
  failures: number;
  cooldownMs: number;
}

/** Failures that say something about the deployment's health (not the caller's bad request). */
const countsAgainstBreaker = (err: unknown) => err instanceof ProviderError && err.retryable;

/**
 * Resolves a model name to deployments: a configured alias; `provider/model`; `claude-*` to anthropic;
 * otherwise the default provider (openai when configured, else the demo model). One breaker per deployment,
 * shared by every request, so a failing upstream is skipped fast.
 */
export class ModelRouter {
  readonly #providers: Map<string, LlmProvider>;
  readonly #aliases = new Map<string, Route>();
  readonly #dynamic = new Map<string, Deployment>();
  readonly #breaker: BreakerSettings;

  constructor(
    providers: Map<string, LlmProvider>,
    routing: RoutingFile | undefined,
    breaker: BreakerSettings,
  ) {
    this.#providers = providers;
    this.#breaker = breaker;
    for (const model of routing?.models ?? []) {
      const deployments = model.deployments.map((d) => {
        const provider = providers.get(d.provider);
        if (!provider)
          throw new Error(`COLLOQUY_CONFIG: models "${model.name}" uses unknown provider "${d.provider}"`);
        return this.#deployment(provider, d.model, d.weight ?? 1, d.priority ?? 0);
      });
      this.#aliases.set(model.name, { name: model.name, deployments, contextWindow: model.context_window });
    }
  }

  get defaultProvider(): LlmProvider | undefined {
    return this.#providers.get('openai') ?? this.#providers.get('demo');
  }

  get aliases(): string[] {
    return [...this.#aliases.keys()];
  }

  get providers(): LlmProvider[] {
    return [...this.#providers.values()];
  }

  resolve(model: string): Route | undefined {
    const alias = this.#aliases.get(model);
    if (alias) return alias;
    const provider = this.#providerFor(model);
    if (!provider) return undefined;
    const upstreamModel = model.startsWith(`${provider.name}/`)
      ? model.slice(provider.name.length + 1)
      : model;
    if (!upstreamModel) return undefined;
    const key = `${provider.name}/${upstreamModel}`;
    let deployment = this.#dynamic.get(key);
    if (!deployment) {
      deployment = this.#deployment(provider, upstreamModel, 1, 0);
      // Bounded: model names come from clients, so unseen names must not grow this map forever.
      if (this.#dynamic.size >= 1000) this.#dynamic.delete(this.#dynamic.keys().next().value!);
      this.#dynamic.set(key, deployment);
    }
    return { name: model, deployments: [deployment], contextWindow: undefined };
  }

  /**
   * Where a name that is not an alias would go (provider and upstream model), without making a deployment:
   * for questions about a name (GET /v1/models/<id>) that must not fill the bounded map of dynamic ones.
   */
  target(model: string): { provider: LlmProvider; model: string } | undefined {
    const alias = this.#aliases.get(model)?.deployments[0];
    if (alias) return { provider: alias.provider, model: alias.model };
    const provider = this.#providerFor(model);
    if (!provider) return undefined;
    const upstreamModel = model.startsWith(`${provider.name}/`)
      ? model.slice(provider.name.length + 1)
      : model;
    return upstreamModel ? { provider, model: upstreamModel } : undefined;
  }

  /** Every deployment with a breaker, for health views and metrics. */
  deployments(): Deployment[] {
    return [...[...this.#aliases.values()].flatMap((r) => r.deployments), ...this.#dynamic.values()];
  }

  #providerFor(model: string): LlmProvider | undefined {
    const slash = model.indexOf('/');
    if (slash > 0) {
      const named = this.#providers.get(model.slice(0, slash));
      if (named) return named;
    }
    if (model === 'demo') return this.#providers.get('demo');
    if (model.startsWith('claude-')) return this.#providers.get('anthropic') ?? this.defaultProvider;
    return this.defaultProvider;
  }

  #deployment(provider: LlmProvider, model: string, weight: number, priority: number): Deployment {
    return {
      id: `${provider.name}/${model}`,
      provider,
      model,
      weight,
      priority,
      breaker: new DeploymentBreaker(this.#breaker.failures, this.#breaker.cooldownMs, countsAgainstBreaker),
    };
  }
}

/** Priority groups in order; inside a group a weighted random order, so load spreads by weight. */
export function orderDeployments(deployments: Deployment[], random = Math.random): Deployment[] {
  // The common route, one deployment, on every request: nothing to order.
  if (deployments.length < 2) return deployments;
  const groups = new Map<number, Deployment[]>();
  for (const d of deployments) groups.set(d.priority, [...(groups.get(d.priority) ?? []), d]);
  return [...groups.keys()]
    .sort((a, b) => a - b)
    .flatMap((priority) => {
      const pool = [...groups.get(priority)!];
      const ordered: Deployment[] = [];
      while (pool.length) {
        const total = pool.reduce((sum, d) => sum + d.weight, 0);
        let pick = random() * total;
        let index = 0;
        while (index < pool.length - 1 && pick >= pool[index]!.weight) pick -= pool[index++]!.weight;
        ordered.push(...pool.splice(index, 1));
      }
      return ordered;
    });
}
