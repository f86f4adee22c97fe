import Type, { type Static } from 'typebox';

/**
 * The environment variables the limits feature reads, in the same style as src/config/schema.ts so they can
 * be spread into `EnvSchema` (`...LIMITS_ENV`) and listed in `.env.example`.
 */
const int = (description: string, min: number, max: number, dflt: number) =>
  Type.Integer({ description, minimum: min, maximum: max, default: dflt });

export const LIMITS_ENV = {
  RATE_LIMIT_ENABLED: Type.Optional(
    Type.Boolean({ description: 'true or false: enforce per key/user/address rate limits (default true)' }),
  ),
  RATE_LIMIT_PER_MINUTE: int(
    'requests per minute per API key and per user, 0 (off) to 1000000',
    0,
    1_000_000,
    60,
  ),
  RATE_LIMIT_PER_HOUR: int(
    'requests per hour per API key and per user, 0 (off) to 100000000',
    0,
    100_000_000,
    1000,
  ),
  RATE_LIMIT_TOKENS_PER_MINUTE: int(
    'tokens per minute per API key and per user, 0 (off) to 1000000000',
    0,
    1_000_000_000,
    100_000,
  ),
  RATE_LIMIT_CONCURRENT_STREAMS: int(
    'open streams per API key and per user, 0 (off) to 100000',
    0,
    100_000,
    10,
  ),
  RATE_LIMIT_IP_PER_MINUTE: int(
    'requests per minute per client address, 0 (off) to 1000000',
    0,
    1_000_000,
    120,
  ),
  RATE_LIMIT_FAIL_MODE: Type.Optional(
    Type.Union([Type.Literal('open'), Type.Literal('closed')], {
      description: 'open or closed: while Redis is down, count locally (open) or answer 503 (closed)',
    }),
  ),
  USAGE_RETENTION_DAYS: int('days usage records are kept (0 keeps them forever), 0 to 36500', 0, 36_500, 90),
};

const LimitsEnvSchema = Type.Object(LIMITS_ENV);
export type LimitsEnv = Partial<Static<typeof LimitsEnvSchema>>;

/** Default limits; 0 turns a limit off (overrides in `limit_overrides` still apply to their subject). */
export interface RateLimitConfig {
  enabled: boolean;
  requestsPerMinute: number;
  requestsPerHour: number;
  tokensPerMinute: number;
  concurrentStreams: number;
  ipRequestsPerMinute: number;
  /** What happens while Redis cannot answer: count in this process (open) or refuse with 503 (closed). */
  failMode: 'open' | 'closed';
}

export const DEFAULT_RATE_LIMITS: RateLimitConfig = {
  enabled: true,
  requestsPerMinute: 60,
  requestsPerHour: 1000,
  tokensPerMinute: 100_000,
  concurrentStreams: 10,
  ipRequestsPerMinute: 120,
  failMode: 'open',
};

export const DEFAULT_USAGE_RETENTION_DAYS = 90;

/** Maps validated environment values (missing ones take the defaults) to the services' configuration. */
export function limitsConfigFromEnv(env: LimitsEnv): {
  rateLimits: RateLimitConfig;
  usageRetentionDays: number;
} {
  const d = DEFAULT_RATE_LIMITS;
  return {
    rateLimits: {
      enabled: env.RATE_LIMIT_ENABLED ?? d.enabled,
      requestsPerMinute: env.RATE_LIMIT_PER_MINUTE ?? d.requestsPerMinute,
      requestsPerHour: env.RATE_LIMIT_PER_HOUR ?? d.requestsPerHour,
      tokensPerMinute: env.RATE_LIMIT_TOKENS_PER_MINUTE ?? d.tokensPerMinute,
      concurrentStreams: env.RATE_LIMIT_CONCURRENT_STREAMS ?? d.concurrentStreams,
      ipRequestsPerMinute: env.RATE_LIMIT_IP_PER_MINUTE ?? d.ipRequestsPerMinute,
      failMode: env.RATE_LIMIT_FAIL_MODE ?? d.failMode,
    },
    usageRetentionDays: env.USAGE_RETENTION_DAYS ?? DEFAULT_USAGE_RETENTION_DAYS,
  };
}
