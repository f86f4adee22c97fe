import type { Config } from '../config/load-config.js';
import { ProviderError } from '../providers/errors.js';
import { createProviders } from '../providers/registry.js';
import type { LlmProvider } from '../providers/types.js';

/** Called per configured cloud; resolves when it is reachable and takes Colloquy's credentials. */
export type CheckCloud = (provider: LlmProvider, timeoutMs: number) => Promise<void>;

export const checkCloudAccess: CheckCloud = (provider, timeoutMs) =>
  provider.checkAccess!(AbortSignal.timeout(timeoutMs));

type Add = (id: string, severity: 'error' | 'warning' | 'info', message: string, fix: string) => void;

/**
 * One line per configured cloud provider (Anthropic, Azure OpenAI, Bedrock, Gemini, Vertex AI, Cohere, Hugging
 * Face, the OpenAI-compatible presets, and the routing file's providers of those types): reachable with its
 * credentials accepted, or what is wrong. The checks run at once, each bounded by the doctor's timeout.
 * OPENAI_API_KEY / OPENAI_BASE_URL are not called here.
 */
export async function checkClouds(config: Config, check: CheckCloud, timeoutMs: number, add: Add) {
  const { cloud, routing } = config.providers;
  const names = new Set([
    ...(config.providers.anthropic ? ['anthropic'] : []),
    ...(cloud.azure ? ['azure'] : []),
    ...(cloud.huggingface ? ['huggingface'] : []),
    ...(cloud.bedrock ? ['bedrock'] : []),
    ...(cloud.gemini ? ['gemini'] : []),
    ...(cloud.vertex ? ['vertex'] : []),
    ...(cloud.cohere ? ['cohere'] : []),
    ...cloud.presets.map((p) => p.preset),
    ...(routing?.providers ?? []).filter((p) => p.type !== 'openai').map((p) => p.name),
  ]);
  if (names.size === 0) return;
  const providers = createProviders({ ...config.providers, demo: { enabled: false, wordDelayMs: 0 } });
  const clouds = [...providers].filter(([name, provider]) => names.has(name) && provider.checkAccess);
  const results = await Promise.all(
    clouds.map(async ([name, provider]) => {
      try {
        await check(provider, timeoutMs);
        return { name, provider, error: undefined };
      } catch (err) {
        return { name, provider, error: err };
      }
    }),
  );
  for (const { name, provider, error } of results) {
    if (!error) {
      add(`cloud.${name}.ok`, 'info', `${name}: reachable, credentials accepted`, 'nothing to do');
      continue;
    }
    const details = error instanceof ProviderError ? error.details : undefined;
    const auth = details?.code === 'upstream_auth_failed' || details?.code === 'upstream_permission_denied';
    const message = `${name}: ${(error as Error).message}`;
    if (auth) add(`cloud.${name}.credentials`, 'error', message, credentialsFix(name, provider.kind));
    else if (details?.code === 'upstream_billing_error')
      add(
        `cloud.${name}.billing`,
        'error',
        message,
        `check the billing of ${name}'s account (its plan and credit balance in the vendor's console)`,
      );
    else if (details?.upstreamStatus === 404)
      add(
        `cloud.${name}.not_found`,
        'error',
        message,
        `check ${name}'s base URL (Azure: the resource endpoint and AZURE_OPENAI_API_VERSION; Vertex: VERTEX_PROJECT and VERTEX_LOCATION)`,
      );
    else
      add(
        `cloud.${name}.unreachable`,
        'error',
        message,
        `check ${name}'s base URL, DNS and firewall from this host (a proxy or private endpoint: set its base URL)`,
      );
  }
}

function credentialsFix(name: string, kind: LlmProvider['kind']) {
  if (kind === 'bedrock')
    return `check ${name}'s AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, or AWS_BEARER_TOKEN_BEDROCK), AWS_REGION, and the bedrock:InvokeModel permission`;
  if (kind === 'anthropic')
    return `check ${name}'s key (ANTHROPIC_API_KEY, or its api_key in the routing file): an active Claude API key from console.anthropic.com`;
  return `check ${name}'s key (Entra ID client credentials for Azure, the service account for Vertex) and that it has access to this resource`;
}
