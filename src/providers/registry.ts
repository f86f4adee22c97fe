import type { Config } from '../config/load-config.js';
import type { RoutingFile } from '../config/routing-file.js';
import type { Logger } from '../core/logger.js';
import { AnthropicProvider } from './anthropic/provider.js';
import { AzureOpenAiProvider } from './azure/provider.js';
import { AwsCredentials } from './bedrock/auth.js';
import { BedrockProvider } from './bedrock/provider.js';
import type { BedrockConfig } from './cloud-config.js';
import { CohereProvider } from './cohere/provider.js';
import { DemoProvider } from './demo/provider.js';
import { GeminiProvider } from './gemini/provider.js';
import { HuggingFaceProvider } from './huggingface/provider.js';
import type { OpenAiNativeProtocol } from './openai/native.js';
import { OpenAiProvider } from './openai/provider.js';
import type { PresetName } from './openai-compatible/preset-list.js';
import { createPresetProvider, presetInfo } from './openai-compatible/presets.js';
import { RoutingGateway } from './router/gateway.js';
import { ModelRouter } from './router/model-router.js';
import type { LlmProvider } from './types.js';
import { VertexProvider } from './vertex/provider.js';

type RoutedProvider = NonNullable<RoutingFile['providers']>[number];

/**
 * What an `openai` provider serves itself (issue 20's pass-through): legacy completions, and the Responses
 * API when it is OpenAI's own API — a base URL pointed at an OpenAI-compatible server (vLLM, LiteLLM, a
 * proxy) seldom has /responses, so those are translated onto chat completions unless `pass_through` says.
 */
export function openAiNativeProtocols(
  baseUrl: string,
  configured?: readonly OpenAiNativeProtocol[],
): readonly OpenAiNativeProtocol[] {
  if (configured) return configured;
  return new URL(baseUrl).hostname === 'api.openai.com' ? ['responses', 'completions'] : ['completions'];
}

/**
 * Every configured provider by name: `openai` and `anthropic` from the SDKs' own variables, the clouds from
 * theirs (`azure`, `bedrock`, `huggingface`, each preset by its name), the routing file's providers, and `demo` outside
 * production. Base URLs come only from here, never from a request.
 */
export function createProviders(config: Config['providers'], logger?: Logger): Map<string, LlmProvider> {
  const providers = new Map<string, LlmProvider>();
  if (config.openai)
    providers.set(
      'openai',
      new OpenAiProvider({
        name: 'openai',
        ...config.openai,
        nativeProtocols: openAiNativeProtocols(config.openai.baseUrl),
      }),
    );
  if (config.anthropic)
    providers.set('anthropic', new AnthropicProvider({ name: 'anthropic', ...config.anthropic }));
  const cloud = config.cloud;
  if (cloud?.azure) providers.set('azure', new AzureOpenAiProvider({ name: 'azure', ...cloud.azure }));
  if (cloud?.huggingface)
    providers.set(
      'huggingface',
      new HuggingFaceProvider({ name: 'huggingface', ...cloud.huggingface, logger }),
    );
  if (cloud?.bedrock) providers.set('bedrock', bedrockProvider('bedrock', cloud.bedrock));
  if (cloud?.gemini) providers.set('gemini', new GeminiProvider({ name: 'gemini', ...cloud.gemini }));
  if (cloud?.cohere) providers.set('cohere', new CohereProvider({ name: 'cohere', ...cloud.cohere }));
  if (cloud?.vertex) providers.set('vertex', new VertexProvider({ name: 'vertex', ...cloud.vertex }));
  for (const p of cloud?.presets ?? [])
    providers.set(p.preset, createPresetProvider({ name: p.preset, ...p, logger }));
  for (const p of config.routing?.providers ?? []) providers.set(p.name, fromRoutingFile(p, logger));
  if (config.demo.enabled) providers.set('demo', new DemoProvider('demo', config.demo.wordDelayMs));
  return providers;
}

function fromRoutingFile(p: RoutedProvider, logger: Logger | undefined): LlmProvider {
  const headers = p.headers ? { headers: p.headers } : {};
  switch (p.type) {
    case 'anthropic':
      return new AnthropicProvider({
        name: p.name,
        apiKey: p.api_key ?? '',
        ...(p.base_url ? { baseUrl: p.base_url } : {}),
        // The routing file's headers (e.g. anthropic-beta) were dropped for Anthropic providers.
        ...headers,
      });
    case 'openai': {
      const baseUrl = p.base_url ?? 'https://api.openai.com/v1';
      return new OpenAiProvider({
        name: p.name,
        baseUrl,
        apiKey: p.api_key,
        ...headers,
        nativeProtocols: openAiNativeProtocols(baseUrl, p.pass_through),
      });
    }
    case 'azure':
      return new AzureOpenAiProvider({
        name: p.name,
        endpoint: p.base_url!, // required for azure by the routing file's own checks
        apiVersion: p.api_version,
        apiKey: p.api_key,
        entra: p.entra && {
          tenantId: p.entra.tenant_id,
          clientId: p.entra.client_id,
          clientSecret: p.entra.client_secret,
          authorityHost: p.entra.authority_host,
          scope: p.entra.scope,
        },
      });
    case 'bedrock':
      return bedrockProvider(p.name, {
        region: p.region!, // required for bedrock by the routing file's own checks
        baseUrl: p.base_url,
        apiKey: p.api_key,
        accessKeyId: p.aws?.access_key_id,
        secretAccessKey: p.aws?.secret_access_key,
        sessionToken: p.aws?.session_token,
        profile: p.aws?.profile,
      });
    case 'huggingface':
      return new HuggingFaceProvider({
        name: p.name,
        apiKey: p.api_key,
        baseUrl: p.base_url,
        embeddingsUrl: p.embeddings_url,
        logger,
      });
    case 'gemini':
      return new GeminiProvider({ name: p.name, apiKey: p.api_key ?? '', baseUrl: p.base_url });
    case 'cohere':
      return new CohereProvider({ name: p.name, apiKey: p.api_key ?? '', baseUrl: p.base_url });
    case 'vertex':
      return new VertexProvider({
        name: p.name,
        project: p.project!, // required for vertex by the routing file's own checks
        location: p.location ?? 'us-central1',
        baseUrl: p.base_url,
        credentialsFile: p.credentials_file,
      });
    default:
      if (!presetInfo(p.type)) throw new Error(`COLLOQUY_CONFIG: unknown provider type ${p.type}`);
      return createPresetProvider({
        name: p.name,
        preset: p.type as PresetName,
        apiKey: p.api_key,
        baseUrl: p.base_url,
        headers: p.headers,
        logger,
        passThrough: p.pass_through,
      });
  }
}

function bedrockProvider(name: string, c: BedrockConfig): BedrockProvider {
  return new BedrockProvider({
    name,
    region: c.region,
    baseUrl: c.baseUrl,
    apiKey: c.apiKey,
    credentials: c.apiKey ? undefined : AwsCredentials.fromConfig(c),
  });
}

/** The gateway features call: providers from configuration, routed with the configured policy. */
export function createGateway(config: Config['providers'], logger: Logger): RoutingGateway {
  const router = config.routing?.router;
  const modelRouter = new ModelRouter(createProviders(config, logger), config.routing, {
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
