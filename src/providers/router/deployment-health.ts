import { CircuitState } from 'cockatiel';
import type { Deployment, ModelRouter } from './model-router.js';

/** Samples kept per deployment and series: enough for a p95, small enough to sort on every read. */
const CAPACITY = 256;
/** Samples older than this are left out of the figures. */
export const HEALTH_WINDOW_MS = 5 * 60_000;

/**
 * The newest samples of one series in preallocated typed arrays: recording overwrites the oldest slot and
 * allocates nothing, so the gateway can feed it on every attempt.
 */
class SampleRing {
  readonly #at = new Float64Array(CAPACITY);
  readonly #value = new Float64Array(CAPACITY);
  #next = 0;
  #size = 0;

  push(at: number, value: number) {
    this.#at[this.#next] = at;
    this.#value[this.#next] = value;
    this.#next = (this.#next + 1) % CAPACITY;
    if (this.#size < CAPACITY) this.#size++;
  }

  /** The values recorded at or after `since`, in no particular order. */
  since(since: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.#size; i++) if (this.#at[i]! >= since) out.push(this.#value[i]!);
    return out;
  }
}

interface DeploymentSamples {
  /** 1 for a failed attempt, 0 for a successful one. */
  attempts: SampleRing;
  latencyMs: SampleRing;
  ttftMs: SampleRing;
}

export type CircuitStateName = 'closed' | 'half-open' | 'open';

export interface DeploymentHealthStats {
  id: string;
  provider: string;
  model: string;
  priority: number;
  weight: number;
  state: CircuitStateName;
  attempts: number;
  failures: number;
  /** failures / attempts over the window; null without attempts. */
  error_ratio: number | null;
  p50_latency_ms: number | null;
  p95_latency_ms: number | null;
  p50_ttft_ms: number | null;
  p95_ttft_ms: number | null;
}

export interface RouteHealth {
  /** The model name clients send: a configured alias, or the `provider/model` a direct call resolved to. */
  name: string;
  kind: 'alias' | 'direct';
  deployments: DeploymentHealthStats[];
}

function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  return Math.round(values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!);
}

const stateName = (state: CircuitState): CircuitStateName =>
  state === CircuitState.Closed ? 'closed' : state === CircuitState.HalfOpen ? 'half-open' : 'open';

/**
 * Recent upstream attempts per deployment, kept by this process only (each replica sees its own traffic):
 * error ratio and latency percentiles over the last few minutes, for the console's Providers page.
 */
export class DeploymentHealth {
  readonly #samples = new Map<string, DeploymentSamples>();

  #for(deploymentId: string): DeploymentSamples {
    let samples = this.#samples.get(deploymentId);
    if (!samples) {
      samples = { attempts: new SampleRing(), latencyMs: new SampleRing(), ttftMs: new SampleRing() };
      this.#samples.set(deploymentId, samples);
    }
    return samples;
  }

  /** An attempt ended: `ok` false when it failed for a reason that says something about the upstream. */
  attempt(deploymentId: string, ok: boolean, at = performance.now()) {
    this.#for(deploymentId).attempts.push(at, ok ? 0 : 1);
  }

  /** A whole answer took `ms` (a completion, or a stream from its first request to its last chunk). */
  latency(deploymentId: string, ms: number, at = performance.now()) {
    this.#for(deploymentId).latencyMs.push(at, ms);
  }

  timeToFirstToken(deploymentId: string, ms: number, at = performance.now()) {
    this.#for(deploymentId).ttftMs.push(at, ms);
  }

  /** Forgets deployments the router no longer has (dynamic ones are evicted past 1000). */
  #prune(live: Set<string>) {
    for (const id of this.#samples.keys()) if (!live.has(id)) this.#samples.delete(id);
  }

  stats(deployment: Deployment, now = performance.now()): DeploymentHealthStats {
    const since = now - HEALTH_WINDOW_MS;
    const samples = this.#samples.get(deployment.id);
    const outcomes = samples?.attempts.since(since) ?? [];
    const failures = outcomes.reduce((sum, failed) => sum + failed, 0);
    const latency = samples?.latencyMs.since(since) ?? [];
    const ttft = samples?.ttftMs.since(since) ?? [];
    return {
      id: deployment.id,
      provider: deployment.provider.name,
      model: deployment.model,
      priority: deployment.priority,
      weight: deployment.weight,
      state: stateName(deployment.breaker.state),
      attempts: outcomes.length,
      failures,
      error_ratio: outcomes.length ? failures / outcomes.length : null,
      p50_latency_ms: percentile(latency, 50),
      p95_latency_ms: percentile(latency, 95),
      p50_ttft_ms: percentile(ttft, 50),
      p95_ttft_ms: percentile(ttft, 95),
    };
  }

  /** Every configured alias with its deployments, then the deployments direct model names resolved to. */
  report(router: ModelRouter, now = performance.now()): RouteHealth[] {
    const routes: RouteHealth[] = [];
    const inAliases = new Set<Deployment>();
    for (const name of router.aliases) {
      const deployments = router.resolve(name)?.deployments ?? [];
      for (const d of deployments) inAliases.add(d);
      routes.push({ name, kind: 'alias', deployments: deployments.map((d) => this.stats(d, now)) });
    }
    const all = router.deployments();
    for (const d of all) {
      if (!inAliases.has(d)) routes.push({ name: d.id, kind: 'direct', deployments: [this.stats(d, now)] });
    }
    this.#prune(new Set(all.map((d) => d.id)));
    return routes;
  }
}
