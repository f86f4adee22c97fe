import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CircuitState } from 'cockatiel';
import pino from 'pino';
import { loadConfig } from '../../config/load-config.js';
import type { RoutingFile } from '../../config/routing-file.js';
import { DemoProvider } from '../demo/provider.js';
import { ProviderError, timeoutError, upstreamHttpError } from '../errors.js';
import { createGateway } from '../registry.js';
import type {
  CallOptions,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  LlmProvider,
  StreamEvent,
  Timeouts,
} from '../types.js';
import { type GatewayPolicy, RoutingGateway } from './gateway.js';
import { type BreakerSettings, type Deployment, ModelRouter, orderDeployments } from './model-router.js';

const logger = pino({ level: 'silent' });

/**
 * What one call of a fake provider does:
 * - `reject`: the call itself fails (like an upstream answering 500 before any byte of the stream);
 * - `failFirst`: a stream is accepted, then fails before its first chunk;
 * - `failAfter`: a stream yields that many chunks, then fails;
 * - `hang`: nothing happens until the call's signal aborts.
 */
type Step =
  | { reject: ProviderError }
  | { failFirst: ProviderError }
  | { failAfter: number; error: ProviderError }
  | { hang: true }
  | { ok: true };

interface Call {
  model: string;
  stream: boolean;
  at: number;
}

class FakeProvider implements LlmProvider {
  readonly calls: Call[] = [];
  readonly script: Step[] = [];
  /** What every call does once the script is used up. */
  fallbackStep: Step = { ok: true };

  constructor(
    readonly name: string,
    readonly kind: LlmProvider['kind'] = 'openai',
    readonly models: string[] = [],
  ) {}

  queue(...steps: Step[]) {
    this.script.push(...steps);
    return this;
  }

  always(step: Step) {
    this.fallbackStep = step;
    return this;
  }

  #next(body: ChatCompletionRequest, stream: boolean): Step {
    this.calls.push({ model: body.model, stream, at: performance.now() });
    return this.script.shift() ?? this.fallbackStep;
  }

  async complete(body: ChatCompletionRequest, options: CallOptions): Promise<ChatCompletion> {
    const step = this.#next(body, false);
    if ('hang' in step) await hang(this.name, options.signal);
    if ('reject' in step) throw step.reject;
    if ('failFirst' in step) throw step.failFirst;
    if ('failAfter' in step) throw step.error;
    return {
      id: `chatcmpl-${this.name}`,
      object: 'chat.completion',
      created: 0,
      model: body.model,
      choices: [
        { index: 0, message: { role: 'assistant', content: `from ${this.name}` }, finish_reason: 'stop' },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    };
  }

  async stream(body: ChatCompletionRequest, options: CallOptions): Promise<AsyncIterable<StreamEvent>> {
    const step = this.#next(body, true);
    if ('hang' in step) await hang(this.name, options.signal);
    if ('reject' in step) throw step.reject;
    const name = this.name;
    const chunk = (content: string): StreamEvent => ({ chunk: chunkOf(body.model, content) });
    async function* events(): AsyncGenerator<StreamEvent> {
      if ('failFirst' in step) throw step.failFirst;
      for (let i = 0; i < 3; i++) {
        if ('failAfter' in step && i === step.failAfter) throw step.error;
        yield chunk(`${name}-${i} `);
      }
    }
    return events();
  }

  async listModels(): Promise<string[]> {
    return this.models;
  }
}

const chunkOf = (model: string, content: string): ChatCompletionChunk => ({
  id: 'chatcmpl-x',
  object: 'chat.completion.chunk',
  created: 0,
  model,
  choices: [{ index: 0, delta: { content }, finish_reason: null }],
});

function hang(provider: string, signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () =>
      reject(
        signal.reason instanceof ProviderError ? signal.reason : timeoutError(provider, 'the whole call', 0),
      );
    if (signal.aborted) fail();
    signal.addEventListener('abort', fail, { once: true });
  });
}

const http = (provider: string, status: number, retryAfter?: string, message = `injected ${status}`) =>
  upstreamHttpError(provider, status, { error: { message } }, retryAfter);

const TIMEOUTS: Timeouts = { connectMs: 1_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 };

function policy(overrides: Partial<GatewayPolicy> = {}): GatewayPolicy {
  return {
    timeouts: TIMEOUTS,
    retries: 2,
    backoff: { initialMs: 40, maxMs: 200 },
    maxRetryAfterMs: 2_000,
    ...overrides,
  };
}

const NO_BREAK: BreakerSettings = { failures: 1_000, cooldownMs: 60_000 };

function setup(
  providers: FakeProvider[] | LlmProvider[],
  options: { routing?: RoutingFile; policy?: Partial<GatewayPolicy>; breaker?: BreakerSettings } = {},
) {
  const router = new ModelRouter(
    new Map(providers.map((p) => [p.name, p])),
    options.routing,
    options.breaker ?? NO_BREAK,
  );
  return { router, gateway: new RoutingGateway(router, policy(options.policy), logger) };
}

/**
 * Whether `promise` settles before a timer of `ms`, the wait the code under test must not do (a backoff, a
 * Retry-After): an ordering of two events, with the product's own wait as the margin, not a speed figure.
 */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      waited,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

let requestNo = 0;
const req = (model: string, signal?: AbortSignal) => ({
  body: { model, messages: [{ role: 'user' as const, content: 'hi' }] },
  requestId: `req_${++requestNo}`,
  ...(signal ? { signal } : {}),
});

async function collect(events: AsyncIterable<StreamEvent>): Promise<string[]> {
  const out: string[] = [];
  for await (const event of events) out.push(event.chunk.choices[0]?.delta.content ?? '');
  return out;
}

function rejectsWithProviderError(
  expected: { status?: number; code?: string; message?: RegExp; upstreamStatus?: number } = {},
) {
  return (err: unknown) => {
    assert.ok(err instanceof ProviderError, `expected a ProviderError, got ${String(err)}`);
    if (expected.status !== undefined) assert.equal(err.details.status, expected.status);
    if (expected.code !== undefined) assert.equal(err.details.code, expected.code);
    if (expected.upstreamStatus !== undefined)
      assert.equal(err.details.upstreamStatus, expected.upstreamStatus);
    if (expected.message) assert.match(err.message, expected.message);
    return true;
  };
}

const twoDeployments = (
  a: { weight?: number; priority?: number } = {},
  b: { weight?: number; priority?: number } = {},
): RoutingFile => ({
  models: [
    {
      name: 'smart',
      deployments: [
        { provider: 'p1', model: 'm1', ...a },
        { provider: 'p2', model: 'm2', ...b },
      ],
    },
  ],
});

describe('ModelRouter: resolving model names', () => {
  it('resolves an alias to its deployments, in the order of the file', () => {
    const { router } = setup([new FakeProvider('p1'), new FakeProvider('p2')], {
      routing: twoDeployments({ weight: 3 }, { priority: 1 }),
    });
    const route = router.resolve('smart');
    assert.ok(route);
    assert.deepEqual(
      route.deployments.map((d) => ({
        id: d.id,
        provider: d.provider.name,
        model: d.model,
        w: d.weight,
        p: d.priority,
      })),
      [
        { id: 'p1/m1', provider: 'p1', model: 'm1', w: 3, p: 0 },
        { id: 'p2/m2', provider: 'p2', model: 'm2', w: 1, p: 1 },
      ],
    );
    assert.deepEqual(router.aliases, ['smart']);
  });

  it('refuses an alias naming a provider that is not configured', () => {
    assert.throws(
      () =>
        new ModelRouter(
          new Map([['p1', new FakeProvider('p1')]]),
          { models: [{ name: 'x', deployments: [{ provider: 'nope', model: 'm' }] }] },
          NO_BREAK,
        ),
      /unknown provider "nope"/,
    );
  });

  it('routes claude-* to anthropic when it is configured, else to the default provider', () => {
    const openai = new FakeProvider('openai');
    const anthropic = new FakeProvider('anthropic', 'anthropic');
    const withAnthropic = setup([openai, anthropic]).router;
    assert.equal(withAnthropic.resolve('claude-sonnet-4-5')?.deployments[0]?.provider, anthropic);
    assert.equal(withAnthropic.resolve('claude-sonnet-4-5')?.deployments[0]?.model, 'claude-sonnet-4-5');
    assert.equal(withAnthropic.resolve('gpt-4o-mini')?.deployments[0]?.provider, openai);
    const without = setup([openai]).router;
    assert.equal(without.resolve('claude-sonnet-4-5')?.deployments[0]?.provider, openai);
  });

  it('understands provider/model, and leaves other slashes to the default provider', () => {
    const openai = new FakeProvider('openai');
    const anthropic = new FakeProvider('anthropic', 'anthropic');
    const groq = new FakeProvider('groq');
    const { router } = setup([openai, anthropic, groq]);
    const first = (model: string) => router.resolve(model)?.deployments[0];
    assert.equal(first('groq/llama-3.3-70b')?.provider, groq);
    assert.equal(first('groq/llama-3.3-70b')?.model, 'llama-3.3-70b');
    assert.equal(first('groq/llama-3.3-70b')?.id, 'groq/llama-3.3-70b');
    assert.equal(first('anthropic/claude-x')?.provider, anthropic);
    assert.equal(first('anthropic/claude-x')?.model, 'claude-x');
    assert.equal(first('openai/gpt-4o')?.model, 'gpt-4o');
    // Not a provider name: an upstream model id with a slash (vLLM, OpenRouter…), sent as is.
    assert.equal(first('meta-llama/Llama-3.1-8B')?.provider, openai);
    assert.equal(first('meta-llama/Llama-3.1-8B')?.model, 'meta-llama/Llama-3.1-8B');
    assert.equal(router.resolve('groq/'), undefined);
  });

  it('shares one deployment (and breaker) per provider/model across requests', () => {
    const { router } = setup([new FakeProvider('openai')]);
    assert.equal(router.resolve('gpt-4o')?.deployments[0], router.resolve('openai/gpt-4o')?.deployments[0]);
  });

  it('finds no route for an unknown model without a default provider: 404 model_not_found', async () => {
    const anthropic = new FakeProvider('anthropic', 'anthropic');
    const { gateway, router } = setup([anthropic]);
    assert.equal(router.resolve('gpt-4o'), undefined);
    assert.equal(gateway.hasModel('gpt-4o'), false);
    assert.equal(gateway.hasModel('claude-x'), true);
    await assert.rejects(
      gateway.complete(req('gpt-4o')),
      (err: unknown) =>
        rejectsWithProviderError({
          status: 404,
          code: 'model_not_found',
          message: /`gpt-4o` does not exist/,
        })(err) && (err as ProviderError).details.param === 'model',
    );
    await assert.rejects(gateway.stream(req('gpt-4o')), rejectsWithProviderError({ status: 404 }));
    assert.equal(anthropic.calls.length, 0);
  });

  it('uses the demo model when nothing else is configured', async () => {
    const { gateway, router } = setup([new DemoProvider('demo', 0)]);
    assert.equal(router.defaultProvider?.name, 'demo');
    const result = await gateway.complete(req('gpt-4o'));
    assert.equal(result.route.provider, 'demo');
    assert.match(result.completion.choices[0]?.message.content ?? '', /^\[demo\] You said: “hi”/);
    const stream = await gateway.stream(req('demo'));
    assert.equal(stream.route.provider, 'demo');
    const text = (await collect(stream.events)).join('');
    assert.equal(
      text,
      result.completion.choices[0]?.message.content,
      'deterministic: same request, same reply',
    );
    assert.deepEqual(
      (await gateway.listModels()).map((m) => m.id),
      ['demo'],
    );
  });
});

describe('orderDeployments: weighted balancing within a priority', () => {
  const deployment = (id: string, weight: number, priority = 0) =>
    ({ id, weight, priority }) as unknown as Deployment;
  const ids = (list: Deployment[]) => list.map((d) => d.id);

  it('picks by weight with an injected random', () => {
    const pool = [deployment('a', 3), deployment('b', 1)];
    assert.deepEqual(ids(orderDeployments(pool, () => 0)), ['a', 'b']);
    assert.deepEqual(ids(orderDeployments(pool, () => 0.74)), ['a', 'b']);
    assert.deepEqual(ids(orderDeployments(pool, () => 0.76)), ['b', 'a']);
    assert.deepEqual(ids(orderDeployments(pool, () => 0.9999)), ['b', 'a']);
  });

  it('always tries a lower priority number first, whatever the weights', () => {
    const pool = [
      deployment('backup', 100, 1),
      deployment('a', 1),
      deployment('b', 1),
      deployment('last', 5, 2),
    ];
    for (const r of [0, 0.3, 0.6, 0.99]) {
      const order = ids(orderDeployments(pool, () => r));
      assert.deepEqual(order.slice(2), ['backup', 'last']);
      assert.deepEqual([...order.slice(0, 2)].sort(), ['a', 'b']);
    }
  });

  it('spreads 3:1 weights about 75/25 over many gateway calls', async () => {
    const p1 = new FakeProvider('p1');
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], { routing: twoDeployments({ weight: 3 }, { weight: 1 }) });
    const calls = 4_000;
    for (let i = 0; i < calls; i++) await gateway.complete(req('smart'));
    assert.equal(p1.calls.length + p2.calls.length, calls);
    const share = p1.calls.length / calls;
    assert.ok(share > 0.72 && share < 0.78, `p1 served ${(share * 100).toFixed(1)}%`);
    assert.ok(p1.calls.every((c) => c.model === 'm1') && p2.calls.every((c) => c.model === 'm2'));
  });
});

describe('RoutingGateway: retries, fallbacks and breakers', () => {
  it('calls the deployment with the upstream model and reports the route', async () => {
    const p1 = new FakeProvider('p1');
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], { routing: twoDeployments({}, { priority: 1 }) });
    const result = await gateway.complete(req('smart'));
    assert.deepEqual(result.route, {
      requestedModel: 'smart',
      provider: 'p1',
      deployment: 'p1/m1',
      upstreamModel: 'm1',
      attempts: 1,
      fallback: false,
    });
    assert.equal(result.completion.choices[0]?.message.content, 'from p1');
    assert.equal(p1.calls[0]?.model, 'm1');
    assert.equal(p2.calls.length, 0);
    assert.equal(typeof result.latencyMs, 'number');
  });

  it('falls back to the next priority at once when the first fails', async () => {
    const p1 = new FakeProvider('p1').always({ reject: http('p1', 500) });
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], {
      routing: twoDeployments({}, { priority: 1 }),
      policy: { backoff: { initialMs: 5_000, maxMs: 5_000 } },
    });
    const completing = gateway.complete(req('smart'));
    assert.ok(await settlesWithin(completing, 5_000), 'answered before the 5 s backoff could have ended');
    const result = await completing;
    assert.equal(result.route.provider, 'p2');
    assert.equal(result.route.fallback, true);
    assert.equal(result.route.attempts, 2);
    assert.equal(p1.calls.length, 1);
    assert.equal(p2.calls.length, 1);
  });

  it('retries 500, 429 and timeouts on the same deployment with a growing backoff', async () => {
    const p = new FakeProvider('openai').queue(
      { reject: http('openai', 500) },
      { reject: http('openai', 429) },
      { reject: timeoutError('openai', 'time to first token', 10) },
    );
    const { gateway } = setup([p], { policy: { retries: 3, backoff: { initialMs: 40, maxMs: 1_000 } } });
    const result = await gateway.complete(req('gpt-4o-mini'));
    assert.equal(result.route.attempts, 4);
    assert.equal(result.route.fallback, false);
    assert.equal(p.calls.length, 4);
    const gaps = p.calls.slice(1).map((c, i) => c.at - p.calls[i]!.at);
    // Full backoff for attempt n is initial * 2^(n-1), with jitter between half and all of it.
    for (const [i, gap] of gaps.entries()) {
      const ceiling = 40 * 2 ** i;
      assert.ok(gap >= ceiling / 2 - 5, `gap ${i + 1} was ${gap.toFixed(0)} ms, expected ≥ ${ceiling / 2}`);
    }
  });

  it('honours Retry-After when it is short enough', async () => {
    const p = new FakeProvider('openai').queue({ reject: http('openai', 429, '1') });
    const { gateway } = setup([p], { policy: { backoff: { initialMs: 1, maxMs: 1 } } });
    const result = await gateway.complete(req('gpt-4o-mini'));
    assert.equal(result.route.attempts, 2);
    const waited = p.calls[1]!.at - p.calls[0]!.at;
    assert.ok(waited >= 980, `waited ${waited.toFixed(0)} ms`);
  });

  it('does not wait for a Retry-After longer than max_retry_after_ms: relays the 429 at once', async () => {
    const p = new FakeProvider('openai').queue({ reject: http('openai', 429, '60', 'slow down') });
    const { gateway } = setup([p], { policy: { maxRetryAfterMs: 2_000 } });
    const completing = gateway.complete(req('gpt-4o-mini'));
    assert.ok(
      await settlesWithin(completing, 2_000),
      'relayed before the longest wait allowed (2 s) could end',
    );
    await assert.rejects(
      completing,
      (err: unknown) =>
        rejectsWithProviderError({ status: 429, message: /slow down/ })(err) &&
        (err as ProviderError).details.retryAfterMs === 60_000,
    );
    assert.equal(p.calls.length, 1);
  });

  it('never makes more than 1 + retries attempts per request', async () => {
    for (const retries of [0, 1, 2, 4]) {
      const p = new FakeProvider('openai').always({ reject: http('openai', 503) });
      const { gateway } = setup([p], { policy: { retries, backoff: { initialMs: 1, maxMs: 2 } } });
      await assert.rejects(
        gateway.complete(req('gpt-4o')),
        rejectsWithProviderError({ status: 503, upstreamStatus: 503 }),
      );
      assert.equal(p.calls.length, 1 + retries, `retries=${retries}`);
      await assert.rejects(gateway.stream(req('gpt-4o')), rejectsWithProviderError({ status: 503 }));
      assert.equal(p.calls.length, 2 * (1 + retries), `stream, retries=${retries}`);
    }
    // Across deployments too: fallbacks count as attempts.
    const p1 = new FakeProvider('p1').always({ reject: http('p1', 500) });
    const p2 = new FakeProvider('p2').always({ reject: http('p2', 500) });
    const { gateway } = setup([p1, p2], {
      routing: twoDeployments({}, { priority: 1 }),
      policy: { retries: 2, backoff: { initialMs: 1, maxMs: 2 } },
    });
    await assert.rejects(gateway.complete(req('smart')), rejectsWithProviderError({ status: 502 }));
    assert.equal(p1.calls.length + p2.calls.length, 3);
  });

  // An upstream 401/403 means Colloquy's own key or account is wrong: a 502, since the client's key is fine.
  for (const [upstream, status] of [
    [400, 400],
    [401, 502],
    [403, 502],
    [404, 404],
    [422, 422],
  ] as const) {
    it(`relays an upstream ${upstream} at once (as ${status}), without retry or fallback`, async () => {
      const p1 = new FakeProvider('p1').always({
        reject: http('p1', upstream, undefined, `upstream says ${upstream}`),
      });
      const p2 = new FakeProvider('p2');
      const { gateway } = setup([p1, p2], { routing: twoDeployments({}, { priority: 1 }) });
      await assert.rejects(
        gateway.complete(req('smart')),
        rejectsWithProviderError({
          status,
          upstreamStatus: upstream,
          message: new RegExp(`upstream says ${upstream}`),
        }),
      );
      await assert.rejects(gateway.stream(req('smart')), rejectsWithProviderError({ status }));
      assert.equal(p1.calls.length, 2);
      assert.equal(p2.calls.length, 0);
    });
  }

  it('opens the breaker after N consecutive failures, skips the deployment fast, and closes after a probe', async () => {
    const p = new FakeProvider('openai').always({ reject: http('openai', 500) });
    const { gateway, router } = setup([p], {
      policy: { retries: 0 },
      breaker: { failures: 3, cooldownMs: 300 },
    });
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        gateway.complete(req('gpt-4o')),
        rejectsWithProviderError({ upstreamStatus: 500 }),
      );
    }
    const deployment = router.resolve('gpt-4o')!.deployments[0]!;
    assert.equal(deployment.breaker.state, CircuitState.Open);
    assert.equal(p.calls.length, 3);

    // Open: answered without calling the upstream (the call count below).
    await assert.rejects(
      gateway.complete(req('gpt-4o')),
      (err: unknown) =>
        rejectsWithProviderError({ status: 503, code: 'no_healthy_deployment' })(err) &&
        (err as ProviderError).details.retryAfterMs !== undefined,
    );
    await assert.rejects(gateway.stream(req('gpt-4o')), rejectsWithProviderError({ status: 503 }));
    assert.equal(p.calls.length, 3);

    // After the cooldown, one half-open probe goes through; its success closes the breaker.
    await sleep(350);
    p.always({ ok: true });
    const result = await gateway.complete(req('gpt-4o'));
    assert.equal(result.route.attempts, 1);
    assert.equal(p.calls.length, 4);
    assert.equal(deployment.breaker.state, CircuitState.Closed);
    await gateway.complete(req('gpt-4o'));
    assert.equal(p.calls.length, 5);
  });

  it('a failed half-open probe opens the breaker again', async () => {
    const p = new FakeProvider('openai').always({ reject: http('openai', 502) });
    const { gateway, router } = setup([p], {
      policy: { retries: 0 },
      breaker: { failures: 2, cooldownMs: 200 },
    });
    for (let i = 0; i < 2; i++) await assert.rejects(gateway.complete(req('gpt-4o')));
    await sleep(250);
    await assert.rejects(gateway.complete(req('gpt-4o')), rejectsWithProviderError({ upstreamStatus: 502 }));
    assert.equal(p.calls.length, 3);
    assert.equal(router.resolve('gpt-4o')!.deployments[0]!.breaker.state, CircuitState.Open);
    await assert.rejects(gateway.complete(req('gpt-4o')), rejectsWithProviderError({ status: 503 }));
    assert.equal(p.calls.length, 3);
  });

  it('skips a deployment whose breaker is open and goes straight to the fallback', async () => {
    const p1 = new FakeProvider('p1').always({ reject: http('p1', 500) });
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], {
      routing: twoDeployments({}, { priority: 1 }),
      policy: { retries: 0 },
      breaker: { failures: 2, cooldownMs: 60_000 },
    });
    // retries: 0 means the failing primary is not retried and the fallback is not reached.
    for (let i = 0; i < 2; i++) await assert.rejects(gateway.complete(req('smart')));
    assert.equal(p1.calls.length, 2);
    const result = await gateway.complete(req('smart'));
    assert.equal(result.route.provider, 'p2');
    assert.equal(result.route.fallback, true);
    assert.equal(result.route.attempts, 1, 'a skipped deployment is not an attempt');
    assert.equal(p1.calls.length, 2);
  });

  it('client errors do not count against the breaker', async () => {
    const p = new FakeProvider('openai').always({ reject: http('openai', 400) });
    const { gateway, router } = setup([p], {
      policy: { retries: 0 },
      breaker: { failures: 2, cooldownMs: 60_000 },
    });
    for (let i = 0; i < 5; i++)
      await assert.rejects(gateway.complete(req('gpt-4o')), rejectsWithProviderError({ status: 400 }));
    assert.equal(router.resolve('gpt-4o')!.deployments[0]!.breaker.state, CircuitState.Closed);
    assert.equal(p.calls.length, 5);
  });

  it('stops waiting when the client goes away during a backoff', async () => {
    const p = new FakeProvider('openai').always({ reject: http('openai', 429, '1') });
    const { gateway } = setup([p]);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const completing = gateway.complete(req('gpt-4o', controller.signal));
    assert.ok(await settlesWithin(completing, 1_000), 'ended before the 1 s Retry-After could have');
    await assert.rejects(completing);
    assert.equal(p.calls.length, 1);
  });

  it('bounds the whole call by the total timeout, as a retryable 504', async () => {
    const p = new FakeProvider('openai').queue({ hang: true });
    const { gateway } = setup([p], { policy: { retries: 2, timeouts: { ...TIMEOUTS, totalMs: 200 } } });
    // AbortSignal.timeout does not keep the process alive (a server does): hold it open meanwhile.
    const keepAlive = setInterval(() => {}, 1_000);
    const started = performance.now();
    try {
      await assert.rejects(gateway.complete(req('gpt-4o')), rejectsWithProviderError({ status: 504 }));
    } finally {
      clearInterval(keepAlive);
    }
    // It ended at all (the upstream never answers) and not before its deadline.
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 190, `took ${elapsed.toFixed(0)} ms`);
    assert.equal(p.calls.length, 1, 'no retry once the deadline has passed');
  });
});

describe('RoutingGateway: streams', () => {
  it('relays every chunk of a healthy stream and reports time to first token', async () => {
    const p = new FakeProvider('openai');
    const { gateway } = setup([p]);
    const result = await gateway.stream(req('gpt-4o'));
    assert.equal(result.route.attempts, 1);
    assert.ok(result.ttftMs >= 0);
    assert.deepEqual(await collect(result.events), ['openai-0 ', 'openai-1 ', 'openai-2 ']);
    assert.equal(p.calls[0]?.stream, true);
  });

  it('retries a stream that fails before its first chunk', async () => {
    const p = new FakeProvider('openai').queue(
      { reject: http('openai', 500) },
      { failFirst: http('openai', 502) },
      { failAfter: 0, error: timeoutError('openai', 'time to first token', 10) },
    );
    const { gateway } = setup([p], { policy: { retries: 3, backoff: { initialMs: 1, maxMs: 5 } } });
    const result = await gateway.stream(req('gpt-4o'));
    assert.equal(result.route.attempts, 4);
    assert.deepEqual(await collect(result.events), ['openai-0 ', 'openai-1 ', 'openai-2 ']);
    assert.equal(p.calls.length, 4);
  });

  it('falls back to another deployment when a stream fails before its first chunk', async () => {
    const p1 = new FakeProvider('p1').always({ failFirst: http('p1', 503) });
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], { routing: twoDeployments({}, { priority: 1 }) });
    const result = await gateway.stream(req('smart'));
    assert.equal(result.route.provider, 'p2');
    assert.equal(result.route.fallback, true);
    assert.deepEqual(await collect(result.events), ['p2-0 ', 'p2-1 ', 'p2-2 ']);
  });

  it('does not retry a stream that fails after its first chunk: the error is thrown while iterating', async () => {
    const p1 = new FakeProvider('p1').always({
      failAfter: 1,
      error: http('p1', 500, undefined, 'died mid-stream'),
    });
    const p2 = new FakeProvider('p2');
    const { gateway } = setup([p1, p2], { routing: twoDeployments({}, { priority: 1 }) });
    const result = await gateway.stream(req('smart'));
    assert.equal(result.route.provider, 'p1');
    const seen: string[] = [];
    await assert.rejects(
      async () => {
        for await (const event of result.events) seen.push(event.chunk.choices[0]?.delta.content ?? '');
      },
      rejectsWithProviderError({ message: /died mid-stream/ }),
    );
    assert.deepEqual(seen, ['p1-0 ']);
    assert.equal(p1.calls.length, 1);
    assert.equal(p2.calls.length, 0);
  });

  it('counts a stream that fails mid-way as a failed attempt on the Providers page (issue 23, #16)', async () => {
    const died = { failAfter: 1, error: http('openai', 500, undefined, 'died') };
    const p = new FakeProvider('openai').queue(died, died, died);
    const { gateway } = setup([p]);
    for (let i = 0; i < 3; i++) {
      const result = await gateway.stream(req('gpt-4o'));
      await assert.rejects(collect(result.events));
    }
    const healthy = await gateway.stream(req('gpt-4o'));
    const stats = () => gateway.providerHealth().flatMap((r) => r.deployments)[0];
    assert.equal(stats()?.attempts, 3, 'an attempt is counted when its stream ends, not at its first chunk');
    await collect(healthy.events);
    assert.equal(stats()?.attempts, 4);
    assert.equal(stats()?.failures, 3);
    assert.equal(stats()?.error_ratio, 0.75);
  });

  it('closes the upstream iterator when the consumer stops early', async () => {
    let returned = false;
    const provider: LlmProvider = {
      name: 'openai',
      kind: 'openai',
      complete: () => Promise.reject(new Error('unused')),
      stream: async (body) => ({
        [Symbol.asyncIterator]: () => {
          let i = 0;
          return {
            next: async () => ({ done: false, value: { chunk: chunkOf(body.model, String(i++)) } }),
            return: async () => {
              returned = true;
              return { done: true, value: undefined };
            },
          };
        },
      }),
    };
    const { gateway } = setup([provider]);
    const result = await gateway.stream(req('gpt-4o'));
    for await (const event of result.events) if (event.chunk.choices[0]?.delta.content === '2') break;
    assert.equal(returned, true);
  });
});

describe('RoutingGateway: listModels', () => {
  it('lists aliases and what the default provider reports, without duplicates', async () => {
    const openai = new FakeProvider('openai', 'openai', ['gpt-4o', 'smart', 'gpt-4o-mini']);
    const other = new FakeProvider('p2', 'openai', ['not-listed']);
    const { gateway } = setup([openai, other], {
      routing: { models: [{ name: 'smart', deployments: [{ provider: 'p2', model: 'x' }] }] },
    });
    assert.deepEqual(await gateway.listModels(), [
      { id: 'smart', owned_by: 'colloquy' },
      { id: 'gpt-4o', owned_by: 'openai' },
      { id: 'gpt-4o-mini', owned_by: 'openai' },
    ]);
  });
});

describe('RoutingGateway: findModel and isKnownModel', () => {
  it('finds listed models, aliases and models the provider they route to lists; nothing else', async () => {
    const openai = new FakeProvider('openai', 'openai', ['gpt-4o']);
    const anthropic = new FakeProvider('anthropic', 'anthropic', ['claude-sonnet-4-5']);
    const { gateway, router } = setup([openai, anthropic], {
      routing: { models: [{ name: 'smart', deployments: [{ provider: 'openai', model: 'gpt-4o' }] }] },
    });
    assert.deepEqual(await gateway.findModel('gpt-4o'), { id: 'gpt-4o', owned_by: 'openai' });
    assert.deepEqual(await gateway.findModel('smart'), { id: 'smart', owned_by: 'colloquy' });
    assert.deepEqual(await gateway.findModel('claude-sonnet-4-5'), {
      id: 'claude-sonnet-4-5',
      owned_by: 'anthropic',
    });
    assert.deepEqual(await gateway.findModel('anthropic/claude-sonnet-4-5'), {
      id: 'anthropic/claude-sonnet-4-5',
      owned_by: 'anthropic',
    });
    // Routable (passed through to the default upstream), but no such model exists.
    assert.equal(gateway.hasModel('gpt-nope'), true);
    assert.equal(await gateway.findModel('gpt-nope'), undefined);
    assert.equal(await gateway.findModel('claude-nope'), undefined);
    // Asking about names makes no deployments (their map is bounded and shared with real traffic).
    const deployments = router.deployments().length;
    for (let i = 0; i < 50; i++) await gateway.findModel(`junk-${i}`);
    assert.equal(router.deployments().length, deployments);

    assert.equal(gateway.isKnownModel('smart'), true);
    assert.equal(gateway.isKnownModel('gpt-4o'), true, 'listed above');
    assert.equal(gateway.isKnownModel('=2+5+cmd'), false);
  });
});

describe('createGateway: providers from the configuration', () => {
  const gatewayFor = (env: Record<string, string>) =>
    createGateway(loadConfig({ DEMO_WORD_DELAY_MS: '0', ...env }, { dotenvDir: null }).providers, logger);
  const routeOf = (gateway: RoutingGateway, model: string) =>
    gateway.complete(req(model)).then(
      (r) => r.route.provider,
      (err: ProviderError) => `${err.details.status} ${err.details.code}`,
    );

  it('serves the demo model when nothing else is configured', async () => {
    const gateway = gatewayFor({});
    assert.equal(await routeOf(gateway, 'gpt-4o-mini'), 'demo');
    assert.equal(await routeOf(gateway, 'claude-sonnet-4-5'), 'demo');
    assert.deepEqual(
      (await gateway.listModels()).map((m) => m.id),
      ['demo'],
    );
  });

  it('routes claude-* to anthropic and the rest to openai when both are configured', () => {
    const gateway = gatewayFor({ OPENAI_API_KEY: 'sk-x', ANTHROPIC_API_KEY: 'sk-ant-x' });
    assert.equal(gateway.hasModel('claude-sonnet-4-5'), true);
    const router = (gateway as unknown as { router: ModelRouter }).router;
    assert.equal(router.resolve('claude-sonnet-4-5')?.deployments[0]?.provider.name, 'anthropic');
    assert.equal(router.resolve('gpt-4o-mini')?.deployments[0]?.provider.name, 'openai');
    assert.equal(router.resolve('demo')?.deployments[0]?.provider.name, 'demo');
  });

  it('answers 404 model_not_found for a non-Claude model when only anthropic is configured', async () => {
    const gateway = gatewayFor({ ANTHROPIC_API_KEY: 'sk-ant-x', DEMO_MODEL_ENABLED: 'false' });
    assert.equal(gateway.hasModel('gpt-4o-mini'), false);
    assert.equal(await routeOf(gateway, 'gpt-4o-mini'), '404 model_not_found');
  });
});
