import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import Type, { type Static } from 'typebox';
import Value from 'typebox/value';

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
            type: Type.Union([Type.Literal('openai'), Type.Literal('anthropic')], {
              description: 'openai or anthropic',
            }),
            base_url: Type.Optional(Type.String({ pattern: '^https?://', description: 'an http(s) URL' })),
            api_key: Type.Optional(Type.String()),
            headers: Type.Optional(Type.Record(Type.String(), Type.String())),
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
  for (const error of Value.Errors(RoutingFileSchema, expanded)) {
    const where =
      error.instancePath
        .replace(/^\//, '')
        .replace(/\/(\d+)/g, '[$1]')
        .replaceAll('/', '.') || '(top level)';
    if (seen.has(where)) continue;
    seen.add(where);
    const description = (error as { schema?: { description?: string } }).schema?.description;
    problems.push(`COLLOQUY_CONFIG: ${where}: ${description ? `expected ${description}` : error.message}`);
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
