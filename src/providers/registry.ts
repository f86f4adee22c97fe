import type { Config } from '../config/load-config.js';
import type { Logger } from '../core/logger.js';
import { AnthropicProvider } from './anthropic/provider.js';
import { DemoProvider } from './demo/provider.js';
import { OpenAiProvider } from './openai/provider.js';
import { RoutingGateway } from './router/gateway.js';
import { ModelRouter } from './router/model-router.js';
import type { LlmProvider } from './types.js';

/**
 * Every configured provider by name: `openai` and `anthropic` from the SDKs' own variables, the routing
 * file's providers, and `demo` outside production. Base URLs come only from here, never from a request.
 */
export function createProviders(config: Config['providers']): Map<string, LlmProvider> {
  const providers = new Map<string, LlmProvider>();
  if (config.openai) providers.set('openai', new OpenAiProvider({ name: 'openai', ...config.openai }));
  if (config.anthropic)
    providers.set('anthropic', new AnthropicProvider({ name: 'anthropic', ...config.anthropic }));
  for (const p of config.routing?.providers ?? []) {
    providers.set(
      p.name,
      p.type === 'anthropic'
        ? new AnthropicProvider({
            name: p.name,
            apiKey: p.api_key ?? '',
            ...(p.base_url ? { baseUrl: p.base_url } : {}),
          })
        : new OpenAiProvider({
            name: p.name,
            baseUrl: p.base_url ?? 'https://api.openai.com/v1',
            apiKey: p.api_key,
            ...(p.headers ? { headers: p.headers } : {}),
          }),
    );
  }
  if (config.demo.enabled) providers.set('demo', new DemoProvider('demo', config.demo.wordDelayMs));
  return providers;
}

/** The gateway features call: providers from configuration, routed with the configured policy. */
export function createGateway(config: Config['providers'], logger: Logger): RoutingGateway {
  const router = config.routing?.router;
  const modelRouter = new ModelRouter(createProviders(config), config.routing, {
    failures: router?.circuit_breaker?.failures ?? 5,
    cooldownMs: router?.circuit_breaker?.cooldown_ms ?? 30_000,
  });
  return new RoutingGateway(
    modelRouter,
    {
      timeouts: config.timeouts,
      retries: config.retries,
      backoff: { initialMs: router?.backoff?.initial_ms ?? 250, maxMs: router?.backoff?.max_ms ?? 8_000 },
      maxRetryAfterMs: router?.max_retry_after_ms ?? 30_000,
    },
    logger,
  );
}
