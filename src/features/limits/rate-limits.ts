import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
} from '../../core/rate-limiter-flexible.js';
import type { Metrics } from '../../metrics/registry.js';
import type { Principal } from '../auth/principal.js';
import type { RateLimitConfig } from './config.js';
import type { LimitOverrideSource, LimitValues } from './overrides.js';
import type { LimitName } from './tables.js';

export interface RateLimitServiceOptions {
  config: RateLimitConfig;
  /** Shared counters for every replica; without it each process counts for itself. */
  redis?: Redis | undefined;
  overrides?: LimitOverrideSource | undefined;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  /** Redis key prefix (tests use a unique one per run). */
  keyPrefix?: string;
  /** How long a stream slot lives in Redis without a heartbeat (a crashed replica's slots expire). */
  streamLeaseMs?: number;
}

/** Headers to add to a successful response. */
export interface RateLimitResult {
  headers: Record<string, string>;
}

/** Frees a concurrent-stream slot. Idempotent: the second and later calls do nothing. */
export type StreamRelease = () => Promise<void>;

type SubjectScope = 'key' | 'user' | 'ip';
type Limits = Record<LimitName, number>;

interface Subject {
  scope: SubjectScope;
  id: string;
  /** Infinity means unlimited. */
  limits: Limits;
}

interface Counter {
  limit: number;
  used: number;
  resetMs: number;
  name: LimitName;
  scope: SubjectScope;
}

const NOOP_RELEASE: StreamRelease = async () => {};
/** The store never refuses by itself: each subject's own limit is compared with the count it returns. */
const STORE_POINTS = 1e15;
const UNAVAILABLE_RETRY_AFTER = '5';

const SCOPE_NAMES: Record<SubjectScope, string> = {
  key: 'this API key',
  user: 'this user',
  ip: 'this client address',
};

const LIMIT_DESCRIPTIONS: Record<LimitName, string> = {
  requests_per_minute: 'requests per minute',
  requests_per_hour: 'requests per hour',
  tokens_per_minute: 'tokens per minute',
  concurrent_streams: 'concurrent streams',
};

// Drops expired slots, then takes one slot in every subject's set only if all of them have room.
// KEYS: one sorted set per subject. ARGV: now, member, lease expiry, key TTL ms, then one limit per key.
const ACQUIRE_STREAM = `
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('zremrangebyscore', key, '-inf', now)
  local open = redis.call('zcard', key)
  if open >= tonumber(ARGV[4 + i]) then return {0, i, open} end
end
for i, key in ipairs(KEYS) do
  redis.call('zadd', key, ARGV[3], ARGV[2])
  redis.call('pexpire', key, ARGV[4])
end
return {1, 0, 0}
`;

// Extends a held slot's lease (XX: a slot that already expired is not resurrected).
const RENEW_STREAM = `
for i, key in ipairs(KEYS) do
  redis.call('zadd', key, 'XX', ARGV[2], ARGV[1])
  redis.call('pexpire', key, ARGV[3])
end
return 1
`;

const RELEASE_STREAM = `
for i, key in ipairs(KEYS) do redis.call('zrem', key, ARGV[1]) end
return 1
`;

interface StreamCommands {
  colloquyStreamAcquire(...args: (string | number)[]): Promise<[number, number, number]>;
  colloquyStreamRenew(...args: (string | number)[]): Promise<number>;
  colloquyStreamRelease(...args: (string | number)[]): Promise<number>;
}

/**
 * Request, token and concurrent-stream limits per API key, per user and per client address. With Redis the
 * counts are atomic in Redis and shared by every replica (fixed windows from the first request); without
 * it each process counts on its own. The master key is never limited.
 *
 * While Redis is down, `failMode: 'open'` counts in this process instead (each replica then enforces the
 * limits on its own share of the traffic) and `failMode: 'closed'` refuses with 503 and Retry-After.
 */
export class RateLimitService {
  readonly #config: RateLimitConfig;
  readonly #redis: Redis | undefined;
  readonly #overrides: LimitOverrideSource | undefined;
  readonly #metrics: Metrics | undefined;
  readonly #logger: Logger | undefined;
  readonly #prefix: string;
  readonly #leaseMs: number;
  readonly #perMinute: RateLimiterAbstract;
  readonly #perHour: RateLimiterAbstract;
  readonly #tokens: RateLimiterAbstract;
  /** Stream slots counted in this process: without Redis, or while it is down in fail-open mode. */
  readonly #localStreams = new Map<string, Set<string>>();
  readonly #held = new Set<StreamRelease>();

  constructor(options: RateLimitServiceOptions) {
    this.#config = options.config;
    this.#redis = options.redis;
    this.#overrides = options.overrides;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#prefix = options.keyPrefix ?? 'colloquy:rl';
    this.#leaseMs = options.streamLeaseMs ?? 60_000;
    this.#perMinute = this.#limiter('rpm', 60);
    this.#perHour = this.#limiter('rph', 3600);
    this.#tokens = this.#limiter('tpm', 60);
    if (this.#redis) {
      this.#redis.defineCommand('colloquyStreamAcquire', { lua: ACQUIRE_STREAM });
      this.#redis.defineCommand('colloquyStreamRenew', { lua: RENEW_STREAM });
      this.#redis.defineCommand('colloquyStreamRelease', { lua: RELEASE_STREAM });
    }
  }

  #limiter(name: string, duration: number): RateLimiterAbstract {
    const keyPrefix = `${this.#prefix}:${name}`;
    const memory = () => new RateLimiterMemory({ keyPrefix, points: STORE_POINTS, duration });
    if (!this.#redis) return memory();
    return new RateLimiterRedis({
      storeClient: this.#redis,
      useRedisPackage: false,
      keyPrefix,
      points: STORE_POINTS,
      duration,
      // Fail-open: while Redis cannot answer, this process' own counts decide.
      ...(this.#config.failMode === 'open' ? { insuranceLimiter: memory() } : {}),
    });
  }

  /** Whether any rate limit can apply to the principal (off, or the master key: none). */
  applies(principal: Principal): boolean {
    return !this.#exempt(principal);
  }

  #exempt(principal: Principal): boolean {
    return !this.#config.enabled || principal.via === 'master_key';
  }

  async #subjects(principal: Principal, ip: string | undefined): Promise<Subject[]> {
    const c = this.#config;
    const defaults = (values: LimitValues): Limits => ({
      requests_per_minute: effective(values.requests_per_minute, c.requestsPerMinute),
      requests_per_hour: effective(values.requests_per_hour, c.requestsPerHour),
      tokens_per_minute: effective(values.tokens_per_minute, c.tokensPerMinute),
      concurrent_streams: effective(values.concurrent_streams, c.concurrentStreams),
    });
    const subjects: Subject[] = [];
    const [keyValues, userValues] = await Promise.all([
      principal.apiKeyId ? this.#overridesOf('key', principal.apiKeyId) : undefined,
      principal.userId ? this.#overridesOf('user', principal.userId) : undefined,
    ]);
    if (principal.apiKeyId && keyValues)
      subjects.push({ scope: 'key', id: principal.apiKeyId, limits: defaults(keyValues) });
    if (principal.userId && userValues)
      subjects.push({ scope: 'user', id: principal.userId, limits: defaults(userValues) });
    if (ip) {
      const perMinute = effective(undefined, c.ipRequestsPerMinute);
      subjects.push({
        scope: 'ip',
        id: ip,
        limits: {
          requests_per_minute: perMinute,
          requests_per_hour: Infinity,
          tokens_per_minute: Infinity,
          concurrent_streams: Infinity,
        },
      });
    }
    return subjects;
  }

  async #overridesOf(scope: 'key' | 'user', id: string): Promise<LimitValues> {
    return this.#overrides ? this.#overrides.get(scope, id) : {};
  }

  /**
   * Counts one request against every request limit of the key, the user and the address, and checks its
   * tokens against the tokens-per-minute limits. Throws 429 `rate_limited` (nothing counted), 413
   * `exceeds_token_limit` for a request that could never fit a limit, or, with Redis down in fail-closed
   * mode, 503; on success returns the X-RateLimit-* headers for the response.
   *
   * What must fit what is left of the minute is the prompt plus the request's own `max_tokens` when it sets
   * one. Without `max_tokens` no output is reserved in advance: the reply's actual tokens are counted when
   * it ends (`recordTokens`), so a window is passed by at most the replies in flight. Reserving a fixed
   * 4,096 instead refused every request forever under a limit below that (issue 19, item 10).
   * `estimatedTokens` is the older form: prompt and output already summed, all of it to fit.
   */
  async check(
    principal: Principal,
    ip: string | undefined,
    options: { promptTokens?: number; maxOutputTokens?: number | null; estimatedTokens?: number } = {},
  ): Promise<RateLimitResult> {
    if (this.#exempt(principal)) return { headers: {} };
    const subjects = await this.#subjects(principal, ip);

    const requests: { limiter: RateLimiterAbstract; key: string; subject: Subject; name: LimitName }[] = [];
    for (const subject of subjects) {
      const key = `${subject.scope}:${subject.id}`;
      if (Number.isFinite(subject.limits.requests_per_minute))
        requests.push({ limiter: this.#perMinute, key, subject, name: 'requests_per_minute' });
      if (Number.isFinite(subject.limits.requests_per_hour))
        requests.push({ limiter: this.#perHour, key, subject, name: 'requests_per_hour' });
    }
    const tokenSubjects = subjects.filter((s) => Number.isFinite(s.limits.tokens_per_minute));
    // Read only when a token limit applies: the caller may estimate lazily.
    const estimated = tokenSubjects.length ? tokensToFit(options) : 0;
    // A request larger than a limit on its own is refused before anything is counted: waiting cannot help.
    const neverFits = tokenSubjects.find((s) => estimated > s.limits.tokens_per_minute);
    if (neverFits) throw this.#tooLarge(neverFits, estimated, options.maxOutputTokens);

    const [consumed, peeked] = await Promise.all([
      Promise.allSettled(requests.map((r) => r.limiter.consume(r.key, 1))),
      Promise.allSettled(tokenSubjects.map((s) => this.#tokens.get(`${s.scope}:${s.id}`))),
    ]);
    const refund = () =>
      Promise.all(
        consumed.map((result, i) =>
          result.status === 'fulfilled'
            ? requests[i]!.limiter.reward(requests[i]!.key, 1).catch(() => undefined)
            : undefined,
        ),
      );

    const failure = [...consumed, ...peeked].find(
      (r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof RateLimiterRes),
    );
    if (failure) {
      await refund();
      throw this.#unavailable(failure.reason);
    }

    const requestCounters: Counter[] = consumed.map((result, i) => {
      const { subject, name } = requests[i]!;
      const res = (result as PromiseFulfilledResult<RateLimiterRes>).value;
      return {
        name,
        scope: subject.scope,
        limit: subject.limits[name],
        used: res.consumedPoints,
        resetMs: res.msBeforeNext,
      };
    });
    const tokenCounters: Counter[] = peeked.map((result, i) => {
      const subject = tokenSubjects[i]!;
      const res = (result as PromiseFulfilledResult<RateLimiterRes | null>).value;
      return {
        name: 'tokens_per_minute',
        scope: subject.scope,
        limit: subject.limits.tokens_per_minute,
        // The tokens this request is expected to use count as already used.
        used: (res?.consumedPoints ?? 0) + estimated,
        resetMs: res?.msBeforeNext ?? 60_000,
      };
    });

    const over = [...requestCounters, ...tokenCounters].filter((c) => c.used > c.limit);
    if (over.length > 0) {
      await refund();
      throw this.#rejection(over);
    }
    return { headers: successHeaders(requestCounters, tokenCounters) };
  }

  #tooLarge(subject: Subject, estimated: number, maxOutputTokens: number | null | undefined): AppError {
    const limit = subject.limits.tokens_per_minute;
    this.#metrics?.limitRejections.inc({ limit: 'tokens_per_minute', scope: subject.scope });
    const output = maxOutputTokens ?? 0;
    const hint =
      output > 0 && estimated - output <= limit
        ? `; lower max_tokens to at most ${limit - (estimated - output)}`
        : '; shorten the messages';
    return new AppError(
      'exceeds_token_limit',
      `request too large: about ${estimated} tokens${output > 0 ? ` (max_tokens ${output} included)` : ''}, ` +
        `more than the limit of ${limit} tokens per minute for ${SCOPE_NAMES[subject.scope]}${hint}`,
      { param: output > 0 ? 'max_tokens' : 'messages', headers: { 'x-should-retry': 'false' } },
    );
  }

  #rejection(over: Counter[]): AppError {
    // The client has to wait for every exceeded window, so the longest wait is the one reported (at equal
    // waits, the most specific subject: key, then user, then address).
    const secondsOf = (c: Counter) => Math.ceil(c.resetMs / 1000);
    const worst = over.reduce((a, b) => (secondsOf(b) > secondsOf(a) ? b : a));
    // One refusal, one count, labelled with the scope it reports (issue 19, item 17: a request over both
    // its key's and its user's limit was counted twice).
    this.#metrics?.limitRejections.inc({ limit: worst.name, scope: worst.scope });
    const seconds = Math.max(1, Math.ceil(worst.resetMs / 1000));
    const headers: Record<string, string> = {
      'retry-after': String(seconds),
      'x-ratelimit-limit': String(worst.limit),
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(seconds),
    };
    return new AppError(
      'rate_limited',
      `rate limit reached: ${worst.limit} ${LIMIT_DESCRIPTIONS[worst.name]} for ${SCOPE_NAMES[worst.scope]}; ` +
        `retry in ${seconds} s`,
      { headers },
    );
  }

  #unavailable(cause: unknown): AppError {
    this.#logger?.warn({ err: cause }, 'rate limits unavailable (fail-closed)');
    return new AppError('service_unavailable', 'rate limits cannot be checked right now; retry shortly', {
      headers: { 'retry-after': UNAVAILABLE_RETRY_AFTER },
      cause,
    });
  }

  /**
   * Adds the tokens a finished call actually used (prompt + completion) to the tokens-per-minute counts of
   * its key and user. Never throws: a failure to count is logged.
   */
  async recordTokens(principal: Principal, tokens: number): Promise<void> {
    if (this.#exempt(principal)) return;
    const points = Math.ceil(tokens);
    if (!(points > 0)) return;
    const keys = [
      principal.apiKeyId ? `key:${principal.apiKeyId}` : undefined,
      principal.userId ? `user:${principal.userId}` : undefined,
    ].filter((k): k is string => k !== undefined);
    const results = await Promise.allSettled(keys.map((k) => this.#tokens.consume(k, points)));
    for (const r of results) {
      if (r.status === 'rejected' && !(r.reason instanceof RateLimiterRes))
        this.#logger?.warn({ err: r.reason }, 'could not count tokens against the rate limit');
    }
  }

  /**
   * Takes one concurrent-stream slot for the key and the user (all or nothing); throws 429 when either has
   * none left. The returned function frees the slot and must be called exactly once, in a `finally`. With
   * Redis a held slot is renewed in the background and expires `streamLeaseMs` after its process dies.
   */
  async acquireStream(principal: Principal): Promise<StreamRelease> {
    if (this.#exempt(principal)) return NOOP_RELEASE;
    const subjects = (await this.#subjects(principal, undefined)).filter((s) =>
      Number.isFinite(s.limits.concurrent_streams),
    );
    if (subjects.length === 0) return NOOP_RELEASE;
    const member = randomUUID();
    let release: StreamRelease;
    if (this.#redis) {
      try {
        release = await this.#acquireRedis(this.#redis, subjects, member);
      } catch (err) {
        if (err instanceof AppError) throw err;
        if (this.#config.failMode === 'closed') throw this.#unavailable(err);
        this.#logger?.warn({ err }, 'redis unavailable; counting streams in this process');
        release = this.#acquireLocal(subjects, member);
      }
    } else {
      release = this.#acquireLocal(subjects, member);
    }
    let released: Promise<void> | undefined;
    const once: StreamRelease = () => {
      released ??= (async () => {
        this.#held.delete(once);
        await release();
      })();
      return released;
    };
    this.#held.add(once);
    return once;
  }

  #streamKey(subject: Subject) {
    return `${this.#prefix}:streams:${subject.scope}:${subject.id}`;
  }

  async #acquireRedis(redis: Redis, subjects: Subject[], member: string): Promise<StreamRelease> {
    const commands = redis as unknown as StreamCommands;
    const keys = subjects.map((s) => this.#streamKey(s));
    const ttl = this.#leaseMs * 2;
    const now = Date.now();
    const [ok, index] = await commands.colloquyStreamAcquire(
      keys.length,
      ...keys,
      now,
      member,
      now + this.#leaseMs,
      ttl,
      ...subjects.map((s) => s.limits.concurrent_streams),
    );
    if (ok !== 1) throw this.#streamRejection(subjects[index - 1]!);
    const heartbeat = setInterval(
      () => {
        commands
          .colloquyStreamRenew(keys.length, ...keys, member, Date.now() + this.#leaseMs, ttl)
          .catch((err) => this.#logger?.warn({ err }, 'could not renew a stream slot'));
      },
      Math.max(10, Math.floor(this.#leaseMs / 3)),
    );
    heartbeat.unref();
    return async () => {
      clearInterval(heartbeat);
      try {
        await commands.colloquyStreamRelease(keys.length, ...keys, member);
      } catch (err) {
        // The slot's lease runs out on its own.
        this.#logger?.warn({ err }, 'could not release a stream slot; it expires with its lease');
      }
    };
  }

  #acquireLocal(subjects: Subject[], member: string): StreamRelease {
    const keys = subjects.map((s) => `${s.scope}:${s.id}`);
    for (const [i, key] of keys.entries()) {
      const open = this.#localStreams.get(key)?.size ?? 0;
      if (open >= subjects[i]!.limits.concurrent_streams) throw this.#streamRejection(subjects[i]!);
    }
    for (const key of keys) {
      const set = this.#localStreams.get(key) ?? new Set<string>();
      set.add(member);
      this.#localStreams.set(key, set);
    }
    return async () => {
      for (const key of keys) {
        const set = this.#localStreams.get(key);
        set?.delete(member);
        if (set?.size === 0) this.#localStreams.delete(key);
      }
    };
  }

  #streamRejection(subject: Subject): AppError {
    this.#metrics?.limitRejections.inc({ limit: 'concurrent_streams', scope: subject.scope });
    const limit = subject.limits.concurrent_streams;
    return new AppError(
      'rate_limited',
      `too many concurrent streams: at most ${limit} for ${SCOPE_NAMES[subject.scope]}; retry when one ends`,
      {
        headers: {
          'retry-after': '1',
          'x-ratelimit-limit': String(limit),
          'x-ratelimit-remaining': '0',
          'x-ratelimit-reset': '1',
        },
      },
    );
  }

  /** Streams currently held through this instance (for shutdown and tests). */
  get heldStreams(): number {
    return this.#held.size;
  }

  /** Frees every slot still held through this instance (graceful shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.#held].map((release) => release()));
  }
}

/** The tokens that must fit what is left of the minute: the prompt, plus max_tokens when the request sets it. */
function tokensToFit(options: {
  promptTokens?: number;
  maxOutputTokens?: number | null;
  estimatedTokens?: number;
}): number {
  const total =
    options.estimatedTokens ?? (options.promptTokens ?? 0) + Math.max(0, options.maxOutputTokens ?? 0);
  return Math.max(0, Math.ceil(total));
}

/** An override wins (negative: unlimited); a default of 0 turns the limit off. */
function effective(override: number | undefined, fallback: number): number {
  if (override !== undefined) return override < 0 ? Infinity : override;
  return fallback > 0 ? fallback : Infinity;
}

/**
 * X-RateLimit-Limit/Remaining/Reset describe the request limit closest to running out (Reset in seconds
 * from now); X-RateLimit-*-Tokens do the same for tokens per minute, counting this request's estimate.
 */
function successHeaders(requests: Counter[], tokens: Counter[]): Record<string, string> {
  const headers: Record<string, string> = {};
  const tightest = (counters: Counter[]) =>
    counters.reduce<Counter | undefined>((best, c) => {
      if (!best) return c;
      const left = c.limit - c.used;
      const bestLeft = best.limit - best.used;
      return left < bestLeft || (left === bestLeft && c.resetMs < best.resetMs) ? c : best;
    }, undefined);
  const r = tightest(requests);
  if (r) {
    headers['x-ratelimit-limit'] = String(r.limit);
    headers['x-ratelimit-remaining'] = String(Math.max(0, r.limit - r.used));
    headers['x-ratelimit-reset'] = String(Math.max(0, Math.ceil(r.resetMs / 1000)));
  }
  const t = tightest(tokens);
  if (t) {
    headers['x-ratelimit-limit-tokens'] = String(t.limit);
    headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, t.limit - t.used));
    headers['x-ratelimit-reset-tokens'] = String(Math.max(0, Math.ceil(t.resetMs / 1000)));
  }
  return headers;
}
