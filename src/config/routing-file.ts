import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';
import { buildGuardrails, GuardrailSchema } from '../features/guardrails/config.js';
import { PRESET_NAMES } from '../providers/openai-compatible/preset-list.js';

/** `type` of a routing-file provider: the wire format it speaks, or an OpenAI-compatible preset. */
export const PROVIDER_TYPES = [
  'openai',
  'anthropic',
  'azure',
  'huggingface',
  'bedrock',
  'gemini',
  'vertex',
  'cohere',
  ...PRESET_NAMES,
] as const;

// Loaded only for a YAML routing file: the parser holds ~1 MiB of heap a server without one need not carry.
const parseYaml = (text: string): unknown =>
  (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text);

/**
 * The routing file (`COLLOQUY_CONFIG`, YAML or JSON): extra providers, model aliases with their
 * deployments, router policy and prices. `${VAR}` in strings is replaced from the environment, so keys
 * stay out of the file.
 */
const Positive = (description: string) => Type.Integer({ minimum: 1, description });

export const RoutingFileSchema = Type.Object(
  {
    providers: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({
              pattern: '^[a-z0-9][a-z0-9_-]*$',
              description: 'lower-case letters, digits, - and _',
            }),
            type: Type.Unsafe<(typeof PROVIDER_TYPES)[number]>(
              Type.Union(
                PROVIDER_TYPES.map((t) => Type.Literal(t)),
                { description: PROVIDER_TYPES.join(', ') },
              ),
            ),
            /** Azure: the resource endpoint, https://{resource}.openai.azure.com */
            base_url: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s) URL' })),
            api_key: Type.Optional(Type.String()),
            headers: Type.Optional(Type.Record(Type.String(), Type.String())),
            /** Azure: v1 (default), preview, or a dated api-version (deployment paths). */
            api_version: Type.Optional(
              Type.String({
                pattern: '^(v1|preview|\\d{4}-\\d{2}-\\d{2}(-preview)?)$',
                description: 'v1, preview, or a dated api-version such as 2024-10-21',
              }),
            ),
            /** Azure: Microsoft Entra ID client credentials instead of an api-key. */
            entra: Type.Optional(
              Type.Object(
                {
                  tenant_id: Type.String({ minLength: 1, description: 'a tenant id' }),
                  client_id: Type.String({ minLength: 1, description: 'a client id' }),
                  client_secret: Type.String({ minLength: 1, description: 'a client secret' }),
                  authority_host: Type.Optional(
                    Type.String({ pattern: '^https?://', description: 'an http(s) URL' }),
                  ),
                  scope: Type.Optional(Type.String({ minLength: 1, description: 'an OAuth scope' })),
                },
                { additionalProperties: false },
              ),
            ),
            /** Bedrock: the region requests are signed for. */
            region: Type.Optional(
              Type.String({
                pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$',
                description: 'an AWS region such as us-east-1',
              }),
            ),
            /** Bedrock: static or temporary keys, or a profile; without them (and api_key), the AWS chain. */
            aws: Type.Optional(
              Type.Object(
                {
                  access_key_id: Type.Optional(
                    Type.String({ minLength: 1, description: 'an access key id' }),
                  ),
                  secret_access_key: Type.Optional(
                    Type.String({ minLength: 1, description: 'a secret key' }),
                  ),
                  session_token: Type.Optional(Type.String({ minLength: 1, description: 'a session token' })),
                  profile: Type.Optional(Type.String({ minLength: 1, description: 'a profile name' })),
                },
                { additionalProperties: false },
              ),
            ),
            /**
             * openai and presets: the client protocols this upstream serves itself, passed through untouched
             * (default: completions for `openai`, plus responses when its base URL is OpenAI's own).
             */
            pass_through: Type.Optional(
              Type.Array(Type.Union([Type.Literal('responses'), Type.Literal('completions')]), {
                uniqueItems: true,
                description: 'responses, completions',
              }),
            ),
            /** Hugging Face: a Text Embeddings Inference server (or a URL template with {model}). */
            embeddings_url: Type.Optional(
              Type.String({ pattern: '^https?://', description: 'an http(s) URL' }),
            ),
            /** Vertex AI: the Google Cloud project, location, and a service-account key file (else workload identity). */
            project: Type.Optional(Type.String({ minLength: 1, description: 'a Google Cloud project id' })),
            location: Type.Optional(
              Type.String({ minLength: 1, description: 'a location such as us-central1' }),
            ),
            credentials_file: Type.Optional(
              Type.String({ minLength: 1, description: 'the path of a service-account key file' }),
            ),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    models: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1, description: 'the model name clients ask for' }),
            context_window: Type.Optional(Positive('tokens the model accepts')),
            vision: Type.Optional(
              Type.Boolean({ description: 'true or false: the model accepts images (attached files)' }),
            ),
            deployments: Type.Array(
              Type.Object(
                {
                  provider: Type.String({ minLength: 1, description: 'a provider name' }),
                  model: Type.String({ minLength: 1, description: 'the upstream model id' }),
                  weight: Type.Optional(
                    Type.Number({ exclusiveMinimum: 0, description: 'a positive number' }),
                  ),
                  priority: Type.Optional(Type.Integer({ minimum: 0, description: '0 is tried first' })),
                },
                { additionalProperties: false },
              ),
              { minItems: 1, description: 'at least one deployment' },
            ),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    router: Type.Optional(
      Type.Object(
        {
          retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 10, description: '0 to 10' })),
          timeouts: Type.Optional(
            Type.Object(
              {
                connect_ms: Type.Optional(Positive('milliseconds')),
                first_token_ms: Type.Optional(Positive('milliseconds')),
                idle_ms: Type.Optional(Positive('milliseconds')),
                total_ms: Type.Optional(Positive('milliseconds')),
              },
              { additionalProperties: false },
            ),
          ),
          backoff: Type.Optional(
            Type.Object(
              {
                initial_ms: Type.Optional(Positive('milliseconds')),
                max_ms: Type.Optional(Positive('milliseconds')),
              },
              { additionalProperties: false },
            ),
          ),
          max_retry_after_ms: Type.Optional(Positive('the longest Retry-After worth waiting for, in ms')),
          circuit_breaker: Type.Optional(
            Type.Object(
              {
                failures: Type.Optional(Positive('consecutive failures')),
                cooldown_ms: Type.Optional(Positive('milliseconds')),
              },
              { additionalProperties: false },
            ),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    // Issue 22: checks applied to every request, in order (src/features/guardrails/).
    guardrails: Type.Optional(Type.Array(GuardrailSchema)),
    guardrail_holdback_chars: Type.Optional(
      Type.Integer({ minimum: 16, maximum: 10_000, description: '16 to 10000 characters' }),
    ),
    prices: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Object(
          {
            input: Type.Number({ minimum: 0, description: 'USD per million input tokens' }),
            output: Type.Number({ minimum: 0, description: 'USD per million output tokens' }),
          },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

export type RoutingFile = Static<typeof RoutingFileSchema>;

/** Reads and validates the file; returns problems prefixed `COLLOQUY_CONFIG: <path>:` instead of throwing. */
export function readRoutingFile(
  file: string,
  env: Record<string, string | undefined>,
): { value?: RoutingFile; problems: string[] } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return {
      problems: [
        `COLLOQUY_CONFIG: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      ],
    };
  }
  let parsed: unknown;
  try {
    parsed = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    return {
      problems: [
        `COLLOQUY_CONFIG: ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`,
      ],
    };
  }
  const problems: string[] = [];
  const expanded = expandEnv(parsed ?? {}, env, problems);
  const seen = new Set<string>();
  const errors = [...Value.Errors(RoutingFileSchema, expanded)];
  // A value outside a union of literals is reported once per literal: name them all in one problem.
  const allowed = new Map<string, string[]>();
  for (const e of errors as { keyword?: string; instancePath: string; params?: { allowedValue?: unknown } }[])
    if (e.keyword === 'const')
      allowed.set(e.instancePath, [...(allowed.get(e.instancePath) ?? []), String(e.params?.allowedValue)]);
  for (const error of errors) {
    const where =
      error.instancePath
        .replace(/^\//, '')
        .replace(/\/(\d+)/g, '[$1]')
        .replaceAll('/', '.') || '(top level)';
    if (seen.has(where)) continue;
    seen.add(where);
    const values = allowed.get(error.instancePath);
    const description =
      (error as { schema?: { description?: string } }).schema?.description ??
      (values && values.length > 1 ? `one of ${values.join(', ')}` : undefined);
    problems.push(`COLLOQUY_CONFIG: ${where}: ${description ? `expected ${description}` : error.message}`);
  }
  if (problems.length === 0) {
    for (const [i, p] of ((expanded as RoutingFile).providers ?? []).entries()) {
      if (p.type === 'azure' && !p.base_url)
        problems.push(
          `COLLOQUY_CONFIG: providers[${i}].base_url: an Azure provider needs its resource endpoint`,
        );
      if (p.type === 'azure' && !p.api_key && !p.entra)
        problems.push(`COLLOQUY_CONFIG: providers[${i}]: an Azure provider needs api_key or entra`);
      if (p.type === 'bedrock' && !p.region)
        problems.push(`COLLOQUY_CONFIG: providers[${i}].region: a Bedrock provider needs its AWS region`);
      if (p.type === 'bedrock' && Boolean(p.aws?.access_key_id) !== Boolean(p.aws?.secret_access_key))
        problems.push(
          `COLLOQUY_CONFIG: providers[${i}].aws: access_key_id and secret_access_key go together`,
        );
      if (p.type === 'gemini' && !p.api_key)
        problems.push(`COLLOQUY_CONFIG: providers[${i}].api_key: a Gemini provider needs its API key`);
      if (p.type === 'vertex' && !p.project)
        problems.push(`COLLOQUY_CONFIG: providers[${i}].project: a Vertex AI provider needs its project`);
    }
    const guardrails = (expanded as RoutingFile).guardrails;
    if (guardrails)
      problems.push(
        ...buildGuardrails(guardrails, {
          env: Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('GUARDRAIL_'))),
        }).problems,
      );
  }
  return problems.length ? { problems } : { value: expanded as RoutingFile, problems };
}

function expandEnv(value: unknown, env: Record<string, string | undefined>, problems: string[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Z_][A-Z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name];
      if (found === undefined) problems.push(`COLLOQUY_CONFIG: refers to \${${name}}, which is not set`);
      return found ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((v) => expandEnv(v, env, problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, problems)]));
  }
  return value;
}
