import { loadConfig } from '../../src/config/load-config.js';
import { createLogger } from '../../src/core/logger.js';
import { createGateway } from '../../src/providers/registry.js';
import { type FakeAzure, startFakeAzure } from '../fake-upstream/clouds/azure.js';
import { type FakeBedrock, startFakeBedrock } from '../fake-upstream/clouds/bedrock.js';
import { type FakeGemini, startFakeGemini } from '../fake-upstream/clouds/gemini.js';
import { startFakeMistral } from '../fake-upstream/clouds/openai-compatible.js';
import type { FakeServer } from '../fake-upstream/clouds/wire.js';

/**
 * The routing gateway in front of cloud fakes, configured by environment alone (the issue 21 contract), with
 * one alias `assistant` over the given deployments: the preamble of the cross-cloud fallback tests. Only the
 * clouds the deployments name are started.
 */
export type Cloud = 'azure' | 'bedrock' | 'gemini' | 'mistral';

export const CLOUD_KEYS = {
  azure: 'azure-fallback-key-0123456789',
  gemini: 'gemini-fallback-key-0123456789',
  mistral: 'mistral-fallback-key-0123456789',
  aws: { accessKeyId: 'AKIAFALLBACK00000000', secretAccessKey: 'fallback-secret-0123456789abcdef' },
};

/** A function tool in OpenAI's format, as the fallback conversations call it. */
export const weatherTool = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { location: { type: 'string' } } },
  },
};

export interface CloudGateway {
  gateway: ReturnType<typeof createGateway>;
  azure: FakeAzure;
  bedrock: FakeBedrock;
  gemini: FakeGemini;
  mistral: FakeServer;
  close(): Promise<void>;
}

export async function startCloudGateway(
  deployments: { provider: Cloud; model: string }[],
  env: Record<string, string> = {},
): Promise<CloudGateway> {
  const wanted = new Set(deployments.map((d) => d.provider));
  const fakes: Partial<Omit<CloudGateway, 'gateway' | 'close'>> = {};
  const close = async () => {
    for (const fake of Object.values(fakes)) await fake.close();
  };
  try {
    const vars: Record<string, string> = { DEMO_WORD_DELAY_MS: '0', ...env };
    if (wanted.has('azure')) {
      fakes.azure = await startFakeAzure({ apiKey: CLOUD_KEYS.azure });
      vars.AZURE_OPENAI_ENDPOINT = fakes.azure.url;
      vars.AZURE_OPENAI_API_KEY = CLOUD_KEYS.azure;
    }
    if (wanted.has('bedrock')) {
      fakes.bedrock = await startFakeBedrock({ region: 'us-east-1', keys: [CLOUD_KEYS.aws] });
      vars.AWS_ACCESS_KEY_ID = CLOUD_KEYS.aws.accessKeyId;
      vars.AWS_SECRET_ACCESS_KEY = CLOUD_KEYS.aws.secretAccessKey;
      vars.AWS_REGION = 'us-east-1';
      vars.AWS_ENDPOINT_URL_BEDROCK_RUNTIME = fakes.bedrock.url;
    }
    if (wanted.has('gemini')) {
      fakes.gemini = await startFakeGemini({ apiKey: CLOUD_KEYS.gemini });
      vars.GEMINI_API_KEY = CLOUD_KEYS.gemini;
      vars.GEMINI_BASE_URL = fakes.gemini.url;
    }
    if (wanted.has('mistral')) {
      fakes.mistral = await startFakeMistral(CLOUD_KEYS.mistral);
      vars.MISTRAL_API_KEY = CLOUD_KEYS.mistral;
      vars.MISTRAL_BASE_URL = `${fakes.mistral.url}/v1`;
    }
    const config = loadConfig(vars, { dotenvDir: null });
    const gateway = createGateway(
      {
        ...config.providers,
        routing: {
          models: [
            { name: 'assistant', deployments: deployments.map((d, priority) => ({ ...d, priority })) },
          ],
          router: { circuit_breaker: { failures: 100, cooldown_ms: 1_000 } },
        },
      },
      createLogger({ level: 'silent', format: 'json' }),
    );
    // Only the started fakes are used by a test; the others are never reached.
    return { ...(fakes as Omit<CloudGateway, 'gateway' | 'close'>), gateway, close };
  } catch (err) {
    await close();
    throw err;
  }
}
