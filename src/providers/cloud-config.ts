import type { EntraCredentials } from './azure/entra-token.js';
import { PRESET_LIST, type PresetName } from './openai-compatible/preset-list.js';

export interface AzureConfig {
  endpoint: string;
  apiVersion: string | undefined;
  apiKey: string | undefined;
  entra: EntraCredentials | undefined;
}

export interface HuggingFaceConfig {
  apiKey: string | undefined;
  baseUrl: string | undefined;
  embeddingsUrl: string | undefined;
}

export interface BedrockConfig {
  region: string;
  /** AWS_ENDPOINT_URL_BEDROCK_RUNTIME: a VPC endpoint, proxy or test server. */
  baseUrl: string | undefined;
  /** A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK): Bearer instead of SigV4. */
  apiKey: string | undefined;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  sessionToken: string | undefined;
  profile: string | undefined;
}

export interface GeminiConfig {
  apiKey: string;
  baseUrl: string | undefined;
}

export interface VertexConfig {
  project: string;
  location: string;
  baseUrl: string | undefined;
  /** A service-account key file; without one, the metadata server's token (workload identity). */
  credentialsFile: string | undefined;
  metadataHost: string | undefined;
}

export interface PresetConfig {
  preset: PresetName;
  apiKey: string | undefined;
  baseUrl: string | undefined;
}

export interface CloudConfig {
  azure: AzureConfig | undefined;
  huggingface: HuggingFaceConfig | undefined;
  bedrock?: BedrockConfig | undefined;
  gemini?: GeminiConfig | undefined;
  vertex?: VertexConfig | undefined;
  cohere?: { apiKey: string; baseUrl: string | undefined } | undefined;
  /** OpenAI-compatible presets configured by their variables alone, each a provider of the preset's name. */
  presets: PresetConfig[];
}

type Vars = Readonly<Record<string, unknown>>;
const str = (vars: Vars, name: string) =>
  typeof vars[name] === 'string' ? (vars[name] as string) : undefined;

/**
 * Setting a cloud's variables creates a provider of that name (issue 21): `azure` from AZURE_OPENAI_* (with a
 * key or Entra ID client credentials), `huggingface` from HUGGINGFACE_API_KEY, `bedrock` from AWS_*, and each preset from its key
 * (or, for a local server, its base URL). Half-configured clouds are problems naming what is missing.
 */
export function cloudConfigFromEnv(vars: Vars, problems: string[]): CloudConfig {
  const endpoint = str(vars, 'AZURE_OPENAI_ENDPOINT');
  const apiKey = str(vars, 'AZURE_OPENAI_API_KEY');
  const tenantId = str(vars, 'AZURE_TENANT_ID');
  const clientId = str(vars, 'AZURE_CLIENT_ID');
  const clientSecret = str(vars, 'AZURE_CLIENT_SECRET');
  const entraParts = [tenantId, clientId, clientSecret].filter(Boolean).length;
  let azure: AzureConfig | undefined;
  if (endpoint) {
    if (!apiKey && entraParts < 3) {
      problems.push(
        'AZURE_OPENAI_ENDPOINT: set AZURE_OPENAI_API_KEY, or AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (Microsoft Entra ID)',
      );
    } else {
      azure = {
        endpoint,
        apiVersion: str(vars, 'AZURE_OPENAI_API_VERSION'),
        apiKey,
        entra:
          !apiKey && tenantId && clientId && clientSecret
            ? { tenantId, clientId, clientSecret, authorityHost: str(vars, 'AZURE_AUTHORITY_HOST') }
            : undefined,
      };
    }
  } else if (apiKey) {
    problems.push(
      'AZURE_OPENAI_ENDPOINT: required with AZURE_OPENAI_API_KEY, e.g. https://my-resource.openai.azure.com',
    );
  }
  const hfKey = str(vars, 'HUGGINGFACE_API_KEY');
  const hfBase = str(vars, 'HUGGINGFACE_BASE_URL');
  const huggingface =
    hfKey || hfBase
      ? { apiKey: hfKey, baseUrl: hfBase, embeddingsUrl: str(vars, 'HUGGINGFACE_EMBEDDINGS_URL') }
      : undefined;
  const bedrock = bedrockFromEnv(vars, problems);
  const presets: PresetConfig[] = [];
  for (const p of PRESET_LIST) {
    const key = p.keyEnv ? str(vars, p.keyEnv) : undefined;
    const baseUrl = str(vars, p.baseUrlEnv);
    if (key || (p.local && baseUrl)) presets.push({ preset: p.name, apiKey: key, baseUrl });
  }
  return { azure, huggingface, bedrock, presets, ...googleAndCohereFromEnv(vars, problems) };
}

/**
 * `bedrock` from the AWS SDK's own variables: a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK), static keys
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), a profile (AWS_PROFILE) or a web identity
 * (AWS_WEB_IDENTITY_TOKEN_FILE, as EKS IRSA sets it), or the endpoint override alone (credentials then come from
 * the AWS chain: container and instance roles). The region is required: AWS_REGION, else AWS_DEFAULT_REGION.
 * Generic AWS credentials without a region are left alone (they may serve other AWS tools).
 */
function bedrockFromEnv(vars: Vars, problems: string[]): BedrockConfig | undefined {
  const apiKey = str(vars, 'AWS_BEARER_TOKEN_BEDROCK');
  const accessKeyId = str(vars, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = str(vars, 'AWS_SECRET_ACCESS_KEY');
  const profile = str(vars, 'AWS_PROFILE');
  const baseUrl = str(vars, 'AWS_ENDPOINT_URL_BEDROCK_RUNTIME');
  const region = str(vars, 'AWS_REGION') ?? str(vars, 'AWS_DEFAULT_REGION');
  const bedrockOnly = apiKey ?? baseUrl;
  // Keys and profiles are often in a shell for other AWS work: without a region they do not make a Bedrock
  // provider (nor a startup error); the Bedrock-only variables without a region are a problem.
  const ambient = accessKeyId ?? profile ?? str(vars, 'AWS_WEB_IDENTITY_TOKEN_FILE');
  if (!bedrockOnly && !(ambient && region)) return undefined;
  let ok = true;
  if (!region) {
    problems.push('AWS_REGION: required for Bedrock (the region requests are signed for), e.g. us-east-1');
    ok = false;
  }
  if (!apiKey && Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    problems.push('AWS_SECRET_ACCESS_KEY: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together');
    ok = false;
  }
  if (!ok || !region) return undefined;
  return {
    region,
    baseUrl,
    apiKey,
    accessKeyId,
    secretAccessKey,
    sessionToken: str(vars, 'AWS_SESSION_TOKEN'),
    profile,
  };
}

/**
 * `gemini` from GEMINI_API_KEY; `vertex` from VERTEX_PROJECT (with GOOGLE_APPLICATION_CREDENTIALS, or the
 * metadata server's workload identity when it is unset). VERTEX_LOCATION defaults to us-central1.
 */
function googleAndCohereFromEnv(
  vars: Vars,
  problems: string[],
): Pick<CloudConfig, 'gemini' | 'vertex' | 'cohere'> {
  const cohereKey = str(vars, 'COHERE_API_KEY');
  if (str(vars, 'COHERE_BASE_URL') && !cohereKey)
    problems.push('COHERE_API_KEY: required with COHERE_BASE_URL');
  const geminiKey = str(vars, 'GEMINI_API_KEY');
  const geminiBase = str(vars, 'GEMINI_BASE_URL');
  if (geminiBase && !geminiKey) problems.push('GEMINI_API_KEY: required with GEMINI_BASE_URL');
  const project = str(vars, 'VERTEX_PROJECT');
  if (!project && (str(vars, 'VERTEX_LOCATION') || str(vars, 'VERTEX_BASE_URL')))
    problems.push(
      'VERTEX_PROJECT: required with VERTEX_LOCATION or VERTEX_BASE_URL (the Google Cloud project id)',
    );
  return {
    gemini: geminiKey ? { apiKey: geminiKey, baseUrl: geminiBase } : undefined,
    cohere: cohereKey ? { apiKey: cohereKey, baseUrl: str(vars, 'COHERE_BASE_URL') } : undefined,
    vertex: project
      ? {
          project,
          location: str(vars, 'VERTEX_LOCATION') ?? 'us-central1',
          baseUrl: str(vars, 'VERTEX_BASE_URL'),
          credentialsFile: str(vars, 'GOOGLE_APPLICATION_CREDENTIALS'),
          metadataHost: str(vars, 'GCE_METADATA_HOST'),
        }
      : undefined,
  };
}

/** Every provider credential in the configuration, for the logger to scrub wherever it appears. */
export function providerSecrets(config: {
  openai?: { apiKey: string | undefined } | undefined;
  anthropic?: { apiKey: string } | undefined;
  cloud?: CloudConfig | undefined;
  routing?:
    | {
        providers?: {
          api_key?: string | undefined;
          entra?: { client_secret: string } | undefined;
          aws?: { secret_access_key?: string | undefined; session_token?: string | undefined } | undefined;
        }[];
      }
    | undefined;
}): string[] {
  const cloud = config.cloud;
  return [
    config.openai?.apiKey,
    config.anthropic?.apiKey,
    cloud?.azure?.apiKey,
    cloud?.azure?.entra?.clientSecret,
    cloud?.huggingface?.apiKey,
    cloud?.bedrock?.apiKey,
    cloud?.bedrock?.secretAccessKey,
    cloud?.bedrock?.sessionToken,
    cloud?.gemini?.apiKey,
    cloud?.cohere?.apiKey,
    ...(cloud?.presets ?? []).map((p) => p.apiKey),
    ...(config.routing?.providers ?? []).flatMap((p) => [
      p.api_key,
      p.entra?.client_secret,
      p.aws?.secret_access_key,
      p.aws?.session_token,
    ]),
  ].filter((s): s is string => typeof s === 'string' && s.length >= 8);
}
