import type { Redis } from 'ioredis';
import { sql } from 'kysely';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { Metrics } from '../../metrics/registry.js';
import type { Principal } from '../auth/principal.js';
import type { PriceTable } from '../usage/prices.js';
import { type Budget, BudgetStore } from './budget-store.js';
import type { BudgetPeriod, LimitScope } from './tables.js';

/** Money is counted in integer nano-dollars: exact sums, no float drift, and safe in Lua and Redis. */
const NANO = 1e9;
const toNano = (usd: number) => Math.max(0, Math.round(usd * NANO));
const fromNano = (nano: number) => nano / NANO;

/** Output tokens assumed for the worst case when the request sets no max_tokens. */
export const DEFAULT_WORST_CASE_OUTPUT_TOKENS = 4096;

/**
 * The most a request can cost: its prompt plus the largest output it allows, at the model's price. Pass the
 * request's `max_completion_tokens ?? max_tokens`, or undefined for `defaultMaxOutputTokens`.
 */
export function worstCaseCost(
  prices: PriceTable,
  request: {
    model: string;
    promptTokens: number;
    maxOutputTokens?: number | null | undefined;
    defaultMaxOutputTokens?: number;
  },
): { usd: number; tokens: number } {
  const output =
    request.maxOutputTokens ?? request.defaultMaxOutputTokens ?? DEFAULT_WORST_CASE_OUTPUT_TOKENS;
  return {
    usd: prices.cost(request.model, request.promptTokens, output),
    tokens: request.promptTokens + output,
  };
}

export interface BudgetWindow {
  period: BudgetPeriod;
  /** 2025-01-31 for a day, 2025-01 for a month (UTC). */
  id: string;
  /** ISO start (inclusive) and end (exclusive). */
  start: string;
  end: string;
}

export function budgetWindow(period: BudgetPeriod, now: Date): BudgetWindow {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  const start = period === 'day' ? new Date(Date.UTC(y, m, d)) : new Date(Date.UTC(y, m, 1));
  const end = period === 'day' ? new Date(Date.UTC(y, m, d + 1)) : new Date(Date.UTC(y, m + 1, 1));
  const iso = start.toISOString();
  return {
    period,
    id: period === 'day' ? iso.slice(0, 10) : iso.slice(0, 7),
    start: iso,
    end: end.toISOString(),
  };
}

export interface Subject {
  scope: LimitScope;
  subjectId: string;
}

/** One budget a reservation counts against, in store units. */
interface Entry {
  budget: Budget;
  window: BudgetWindow;
  /** Counter name, e.g. key:key_123:day:2025-01-31. */
  name: string;
  limitNano: number;
  limitTokens: number;
  addNano: number;
  addTokens: number;
  /** When the window's counters may be dropped (ms since epoch). */
  expireAtMs: number;
}

type ReserveOutcome =
  | { ok: true }
  | { ok: false; missing: number }
  | { ok: false; refused: number; kind: 'usd' | 'tokens'; spent: number; reserved: number };

interface Counters {
  usdNano: number;
  tokens: number;
  reservedNano: number;
  reservedTokens: number;
}

/** Where the fast counters live: Redis (shared by replicas) or this process. */
interface CounterBackend {
  readonly kind: 'redis' | 'memory';
  /** Atomically: drop expired reservations, check every entry fits, then reserve in all or none. */
  reserve(entries: Entry[], id: string, nowMs: number, expiresAtMs: number): Promise<ReserveOutcome>;
  /** Removes the reservation (if still there) and adds the actual spend to counters that exist. */
  settle(entries: Entry[], id: string, usdNano: number, tokens: number, nowMs: number): Promise<void>;
  /** Sets spent totals from the ledger; without `force` only when the counter does not exist yet. */
  init(
    entry: Pick<Entry, 'name' | 'expireAtMs'>,
    usdNano: number,
    tokens: number,
    force: boolean,
    nowMs: number,
  ): Promise<void>;
  read(name: string, nowMs: number): Promise<Counters | null>;
}

// KEYS: per entry, its hash then its reservation sorted set.
// ARGV: now, reservation id, reservation expiry, then per entry: limit usd, limit tokens, add usd, add
// tokens, counters' time to live (ms). Limits of -1 mean none. All amounts are integers. Times come from
// the service's clock (injectable); only TTLs are given to Redis, so its own clock never matters.
const LUA_PURGE = `
-- Amounts stay strings end to end (no float formatting); Redis rejects "-0" as an integer.
local function neg(amount)
  if amount == '0' then return '0' end
  return '-' .. amount
end
local function purge(h, z, now)
  local expired = redis.call('zrangebyscore', z, '-inf', now)
  for _, rid in ipairs(expired) do
    local amount = redis.call('hget', h, 'r:' .. rid)
    if amount then
      local u, t = string.match(amount, '^(%d+) (%d+)$')
      redis.call('hincrby', h, 'rusd', neg(u))
      redis.call('hincrby', h, 'rtok', neg(t))
      redis.call('hdel', h, 'r:' .. rid)
    end
  end
  if #expired > 0 then redis.call('zremrangebyscore', z, '-inf', now) end
end
`;

const RESERVE = `${LUA_PURGE}
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local n = #KEYS / 2
for i = 1, n do
  if redis.call('exists', KEYS[2 * i - 1]) == 0 then return {-1, i} end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  purge(h, z, now)
  local a = 3 + (i - 1) * 5
  local v = redis.call('hmget', h, 'usd', 'tok', 'rusd', 'rtok')
  local usd, tok = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local rusd, rtok = tonumber(v[3]) or 0, tonumber(v[4]) or 0
  local limitUsd, limitTok = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if limitUsd >= 0 and usd + rusd + tonumber(ARGV[a + 3]) > limitUsd then return {0, i, 'usd', usd, rusd} end
  if limitTok >= 0 and tok + rtok + tonumber(ARGV[a + 4]) > limitTok then return {0, i, 'tokens', tok, rtok} end
end
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 3 + (i - 1) * 5
  redis.call('hincrby', h, 'rusd', ARGV[a + 3])
  redis.call('hincrby', h, 'rtok', ARGV[a + 4])
  redis.call('hset', h, 'r:' .. rid, ARGV[a + 3] .. ' ' .. ARGV[a + 4])
  redis.call('zadd', z, ARGV[3], rid)
  redis.call('pexpire', h, ARGV[a + 5])
  redis.call('pexpire', z, ARGV[a + 5])
end
return {1}
`;

// KEYS as for RESERVE. ARGV: reservation id, usd, tokens, then per entry the counters' TTL (ms).
const SETTLE = `${LUA_PURGE}
local rid = ARGV[1]
local n = #KEYS / 2
for i = 1, n do
  local h, z = KEYS[2 * i - 1], KEYS[2 * i]
  local amount = redis.call('hget', h, 'r:' .. rid)
  if amount then
    local u, t = string.match(amount, '^(%d+) (%d+)$')
    redis.call('hincrby', h, 'rusd', neg(u))
    redis.call('hincrby', h, 'rtok', neg(t))
    redis.call('hdel', h, 'r:' .. rid)
  end
  redis.call('zrem', z, rid)
  -- A missing counter is rebuilt from the ledger, which holds this request too: nothing to add.
  if redis.call('exists', h) == 1 then
    redis.call('hincrby', h, 'usd', ARGV[2])
    redis.call('hincrby', h, 'tok', ARGV[3])
    redis.call('pexpire', h, ARGV[3 + i])
  end
end
return 1
`;

// KEYS: hash. ARGV: usd, tokens, TTL (ms), force ('1' resets spent totals, keeping in-flight reservations).
const INIT = `
local h = KEYS[1]
if ARGV[4] ~= '1' and redis.call('exists', h) == 1 then return 0 end
redis.call('hset', h, 'usd', ARGV[1], 'tok', ARGV[2])
redis.call('hsetnx', h, 'rusd', 0)
redis.call('hsetnx', h, 'rtok', 0)
redis.call('pexpire', h, ARGV[3])
return 1
`;

// KEYS: hash, sorted set. ARGV: now. Drops expired reservations, then reads.
const READ = `${LUA_PURGE}
if redis.call('exists', KEYS[1]) == 0 then return false end
purge(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return redis.call('hmget', KEYS[1], 'usd', 'tok', 'rusd', 'rtok')
`;

interface BudgetCommands {
  colloquyBudgetReserve(...args: (string | number)[]): Promise<(number | string)[]>;
  colloquyBudgetSettle(...args: (string | number)[]): Promise<number>;
  colloquyBudgetInit(...args: (string | number)[]): Promise<number>;
  colloquyBudgetRead(...args: (string | number)[]): Promise<(string | null)[] | null>;
}

class RedisCounters implements CounterBackend {
  readonly kind = 'redis';
  readonly #redis: BudgetCommands;

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand('colloquyBudgetReserve', { lua: RESERVE });
    redis.defineCommand('colloquyBudgetSettle', { lua: SETTLE });
    redis.defineCommand('colloquyBudgetInit', { numberOfKeys: 1, lua: INIT });
    redis.defineCommand('colloquyBudgetRead', { numberOfKeys: 2, lua: READ });
    this.#redis = redis as unknown as BudgetCommands;
  }

  #keys(entries: Pick<Entry, 'name'>[]): string[] {
    return entries.flatMap((e) => [`${this.prefix}:${e.name}`, `${this.prefix}:${e.name}:res`]);
  }

  async reserve(entries: Entry[], id: string, nowMs: number, expiresAtMs: number): Promise<ReserveOutcome> {
    const keys = this.#keys(entries);
    const result = await this.#redis.colloquyBudgetReserve(
      keys.length,
      ...keys,
      nowMs,
      id,
      expiresAtMs,
      ...entries.flatMap((e) => [e.limitNano, e.limitTokens, e.addNano, e.addTokens, ttl(e, nowMs)]),
    );
    const [status, index] = result as [number, number];
    if (status === 1) return { ok: true };
    if (status === -1) return { ok: false, missing: index - 1 };
    return {
      ok: false,
      refused: index - 1,
      kind: result[2] as 'usd' | 'tokens',
      spent: Number(result[3]),
      reserved: Number(result[4]),
    };
  }

  async settle(entries: Entry[], id: string, usdNano: number, tokens: number, nowMs: number): Promise<void> {
    const keys = this.#keys(entries);
    await this.#redis.colloquyBudgetSettle(
      keys.length,
      ...keys,
      id,
      usdNano,
      tokens,
      ...entries.map((e) => ttl(e, nowMs)),
    );
  }

  async init(
    entry: Pick<Entry, 'name' | 'expireAtMs'>,
    usdNano: number,
    tokens: number,
    force: boolean,
    nowMs: number,
  ) {
    await this.#redis.colloquyBudgetInit(
      `${this.prefix}:${entry.name}`,
      usdNano,
      tokens,
      ttl(entry, nowMs),
      force ? '1' : '0',
    );
  }

  async read(name: string, nowMs: number): Promise<Counters | null> {
    const v = await this.#redis.colloquyBudgetRead(
      `${this.prefix}:${name}`,
      `${this.prefix}:${name}:res`,
      nowMs,
    );
    if (!v) return null;
    return {
      usdNano: Number(v[0] ?? 0),
      tokens: Number(v[1] ?? 0),
      reservedNano: Number(v[2] ?? 0),
      reservedTokens: Number(v[3] ?? 0),
    };
  }
}

interface MemoryCounter extends Counters {
  reservations: Map<string, { usdNano: number; tokens: number; expiresAtMs: number }>;
  expireAtMs: number;
}

/** The same semantics in this process: each operation runs without an await, so it is atomic here. */
class MemoryCounters implements CounterBackend {
  readonly kind = 'memory';
  readonly #counters = new Map<string, MemoryCounter>();
  #lastSweep = 0;

  #get(name: string, nowMs: number): MemoryCounter | undefined {
    const counter = this.#counters.get(name);
    if (counter && counter.expireAtMs <= nowMs) {
      this.#counters.delete(name);
      return undefined;
    }
    return counter;
  }

  #purge(counter: MemoryCounter, nowMs: number) {
    for (const [id, r] of counter.reservations) {
      if (r.expiresAtMs > nowMs) continue;
      counter.reservedNano -= r.usdNano;
      counter.reservedTokens -= r.tokens;
      counter.reservations.delete(id);
    }
  }

  #sweep(nowMs: number) {
    if (nowMs - this.#lastSweep < 60_000) return;
    this.#lastSweep = nowMs;
    for (const [name, c] of this.#counters) if (c.expireAtMs <= nowMs) this.#counters.delete(name);
  }

  async reserve(entries: Entry[], id: string, nowMs: number, expiresAtMs: number): Promise<ReserveOutcome> {
    this.#sweep(nowMs);
    const counters: MemoryCounter[] = [];
    for (const [i, e] of entries.entries()) {
      const counter = this.#get(e.name, nowMs);
      if (!counter) return { ok: false, missing: i };
      counters.push(counter);
    }
    for (const [i, e] of entries.entries()) {
      const c = counters[i]!;
      this.#purge(c, nowMs);
      if (e.limitNano >= 0 && c.usdNano + c.reservedNano + e.addNano > e.limitNano)
        return { ok: false, refused: i, kind: 'usd', spent: c.usdNano, reserved: c.reservedNano };
      if (e.limitTokens >= 0 && c.tokens + c.reservedTokens + e.addTokens > e.limitTokens)
        return { ok: false, refused: i, kind: 'tokens', spent: c.tokens, reserved: c.reservedTokens };
    }
    for (const [i, e] of entries.entries()) {
      const c = counters[i]!;
      c.reservedNano += e.addNano;
      c.reservedTokens += e.addTokens;
      c.reservations.set(id, { usdNano: e.addNano, tokens: e.addTokens, expiresAtMs });
    }
    return { ok: true };
  }

  async settle(entries: Entry[], id: string, usdNano: number, tokens: number): Promise<void> {
    // A counter past its window is gone: the ledger (which holds this request) rebuilds it if needed.
    for (const e of entries) {
      const c = this.#counters.get(e.name);
      if (!c) continue;
      const r = c.reservations.get(id);
      if (r) {
        c.reservedNano -= r.usdNano;
        c.reservedTokens -= r.tokens;
        c.reservations.delete(id);
      }
      c.usdNano += usdNano;
      c.tokens += tokens;
    }
  }

  async init(entry: Pick<Entry, 'name' | 'expireAtMs'>, usdNano: number, tokens: number, force: boolean) {
    const existing = this.#counters.get(entry.name);
    if (existing && !force) return;
    if (existing) {
      existing.usdNano = usdNano;
      existing.tokens = tokens;
      existing.expireAtMs = entry.expireAtMs;
      return;
    }
    this.#counters.set(entry.name, {
      usdNano,
      tokens,
      reservedNano: 0,
      reservedTokens: 0,
      reservations: new Map(),
      expireAtMs: entry.expireAtMs,
    });
  }

  async read(name: string, nowMs: number): Promise<Counters | null> {
    const c = this.#get(name, nowMs);
    if (!c) return null;
    this.#purge(c, nowMs);
    return {
      usdNano: c.usdNano,
      tokens: c.tokens,
      reservedNano: c.reservedNano,
      reservedTokens: c.reservedTokens,
    };
  }
}

export interface BudgetReservation {
  readonly id: string;
  readonly requestId: string;
  /** The budgets this request counts against (empty: nothing to enforce). */
  readonly budgets: readonly Budget[];
}

interface ReservationState {
  entries: Entry[];
  backend: CounterBackend;
  done: boolean;
}

export interface BudgetStatus extends Budget {
  window: BudgetWindow;
  spentUsd: number;
  spentTokens: number;
  reservedUsd: number;
  reservedTokens: number;
}

export interface BudgetServiceOptions {
  db: Db;
  /** Shared counters for every replica; without it each process counts on its own. */
  redis?: Redis | undefined;
  /** While Redis is down: count in this process, rebuilt from the ledger (open), or refuse with 503 (closed). */
  failMode?: 'open' | 'closed';
  store?: BudgetStore;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  /** Injectable clock (tests move across day and month boundaries). */
  now?: () => Date;
  keyPrefix?: string;
  /** A reservation not settled or released within this time frees its budget on its own (default 15 min). */
  reservationTtlMs?: number;
}

const SCOPE_NAMES: Record<LimitScope, string> = { key: 'this API key', user: 'this user' };
const PERIOD_NAMES: Record<BudgetPeriod, string> = { day: 'daily', month: 'monthly' };
/** Counters outlive their window a little, so a late settle still finds them. */
const COUNTER_GRACE_MS = 2 * 24 * 3600_000;

/**
 * Spend budgets per API key and per user, per day and per month, in USD and/or tokens. A request reserves
 * its worst-case cost before any provider is called (refused with 429 insufficient_quota when spent +
 * reserved + worst case would pass a limit), then settles to its actual cost or releases the reservation.
 *
 * With Redis the check-and-reserve is one Lua script over every budget involved, so it is atomic across
 * replicas; reservations carry a TTL so a crashed replica cannot hold budget forever. Without Redis the
 * same counters live in this process. The usage ledger is the source of truth: a counter that does not
 * exist (first use, a new window, Redis restarted or evicted it) is rebuilt from `usage_records` before it
 * is used, so a missing key never means "nothing spent".
 */
export class BudgetService {
  readonly store: BudgetStore;
  readonly #db: Db;
  readonly #redisCounters: RedisCounters | undefined;
  readonly #memoryCounters = new MemoryCounters();
  readonly #failMode: 'open' | 'closed';
  readonly #metrics: Metrics | undefined;
  readonly #logger: Logger | undefined;
  readonly #now: () => Date;
  readonly #ttlMs: number;
  readonly #states = new WeakMap<BudgetReservation, ReservationState>();
  /** Counter rebuilds in flight, shared by concurrent requests. */
  readonly #rebuilding = new Map<string, Promise<void>>();
  /** Subjects whose shared counters missed some spend (Redis was down): rebuilt on next use. */
  readonly #stale = new Set<string>();
  /**
   * Writes usage rows still queued by this process (the recorder batches them), so a counter rebuilt from
   * the ledger includes every request already settled here.
   */
  flushLedger: (() => Promise<void>) | undefined;

  constructor(options: BudgetServiceOptions) {
    this.#db = options.db;
    this.store = options.store ?? new BudgetStore(options.db);
    this.#redisCounters = options.redis
      ? new RedisCounters(options.redis, options.keyPrefix ?? 'colloquy:budget')
      : undefined;
    this.#failMode = options.failMode ?? 'open';
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
    this.#ttlMs = options.reservationTtlMs ?? 15 * 60_000;
  }

  #entries(budgets: Budget[], now: Date, worstCaseUsd: number, worstCaseTokens: number): Entry[] {
    return budgets.map((budget) => {
      const window = budgetWindow(budget.period, now);
      return {
        budget,
        window,
        name: counterName(budget, window),
        limitNano: budget.limitUsd === null ? -1 : toNano(budget.limitUsd),
        limitTokens: budget.limitTokens === null ? -1 : budget.limitTokens,
        addNano: toNano(worstCaseUsd),
        addTokens: Math.max(0, Math.ceil(worstCaseTokens)),
        expireAtMs: Date.parse(window.end) + COUNTER_GRACE_MS,
      };
    });
  }

  /** Whether no budget can apply to the principal (the master key; or none, per a fresh cache read). */
  knownNone(principal: Principal): boolean {
    return principal.via === 'master_key' || this.store.knownNone(principal);
  }

  /**
   * Reserves the request's worst case against every budget of its key and user, or throws 429
   * `budget_exceeded` (type insufficient_quota) naming the budget and period. Call before the provider.
   */
  async reserve(request: {
    principal: Principal;
    requestId: string;
    worstCaseUsd: number;
    worstCaseTokens: number;
  }): Promise<BudgetReservation> {
    const { principal } = request;
    const budgets = principal.via === 'master_key' ? [] : await this.store.forPrincipal(principal);
    // Nothing to reserve against: no id to draw either. The worst case is read only past this point (the
    // caller may compute it lazily).
    if (budgets.length === 0) return { id: '', requestId: request.requestId, budgets };
    const reservation: BudgetReservation = { id: newId('bres'), requestId: request.requestId, budgets };
    const now = this.#now();
    const entries = this.#entries(budgets, now, request.worstCaseUsd, request.worstCaseTokens);
    const backend = await this.#reserveAnywhere(entries, reservation.id, now);
    this.#states.set(reservation, { entries, backend, done: false });
    return reservation;
  }

  async #reserveAnywhere(entries: Entry[], id: string, now: Date): Promise<CounterBackend> {
    const redis = this.#redisCounters;
    if (redis) {
      try {
        await this.#refreshStale(redis, entries, now);
        await this.#reserveOn(redis, entries, id, now);
        return redis;
      } catch (err) {
        if (err instanceof AppError) throw err;
        if (this.#failMode === 'closed') {
          this.#logger?.warn({ err }, 'budgets unavailable (fail-closed)');
          throw new AppError('service_unavailable', 'budgets cannot be checked right now; retry shortly', {
            headers: { 'retry-after': '5' },
            cause: err,
          });
        }
        this.#logger?.warn({ err }, 'redis unavailable; checking budgets in this process');
        // Spend counted here is not in Redis: rebuild these subjects' shared counters on their next use.
        for (const e of entries) this.#stale.add(subjectKey(e.budget));
      }
    }
    await this.#reserveOn(this.#memoryCounters, entries, id, now);
    return this.#memoryCounters;
  }

  async #refreshStale(backend: CounterBackend, entries: Entry[], now: Date) {
    const stale = new Map<string, Subject>();
    for (const e of entries) {
      const key = subjectKey(e.budget);
      if (this.#stale.has(key)) stale.set(key, e.budget);
    }
    for (const [key, subject] of stale) {
      await this.#reconcileOn(backend, subject, now);
      this.#stale.delete(key);
    }
  }

  async #reserveOn(backend: CounterBackend, entries: Entry[], id: string, now: Date): Promise<void> {
    const nowMs = now.getTime();
    for (let attempt = 0; attempt < 5; attempt++) {
      const outcome = await backend.reserve(entries, id, nowMs, nowMs + this.#ttlMs);
      if (outcome.ok) return;
      if ('missing' in outcome) {
        await this.#rebuild(backend, entries[outcome.missing]!);
        continue;
      }
      throw this.#refusal(entries[outcome.refused]!, outcome.kind, outcome.spent, outcome.reserved);
    }
    throw new Error('budget counters could not be initialised');
  }

  /** Rebuilds a missing counter from the ledger, once per counter however many requests are waiting. */
  #rebuild(backend: CounterBackend, entry: Entry): Promise<void> {
    const key = `${backend.kind}:${entry.name}`;
    let pending = this.#rebuilding.get(key);
    if (!pending) {
      pending = (async () => {
        await this.flushLedger?.();
        const spent = await ledgerSpend(this.#db, entry.budget, entry.window);
        await backend.init(entry, toNano(spent.usd), spent.tokens, false, this.#now().getTime());
      })().finally(() => this.#rebuilding.delete(key));
      this.#rebuilding.set(key, pending);
    }
    return pending;
  }

  #refusal(entry: Entry, kind: 'usd' | 'tokens', spent: number, reserved: number): AppError {
    const { budget, window } = entry;
    this.#metrics?.limitRejections.inc({ limit: `budget_${budget.period}`, scope: budget.scope });
    const what =
      kind === 'usd'
        ? `the ${PERIOD_NAMES[budget.period]} budget of ${usd(budget.limitUsd!)} for ${SCOPE_NAMES[budget.scope]} ` +
          `(${usd(fromNano(spent))} spent, ${usd(fromNano(reserved))} reserved by requests in progress, ` +
          `this request may cost up to ${usd(fromNano(entry.addNano))})`
        : `the ${PERIOD_NAMES[budget.period]} budget of ${budget.limitTokens} tokens for ` +
          `${SCOPE_NAMES[budget.scope]} (${spent} used, ${reserved} reserved by requests in progress, ` +
          `this request may use up to ${entry.addTokens})`;
    return new AppError('budget_exceeded', `budget exceeded: ${what}; it resets at ${window.end}`, {
      // The OpenAI SDKs honour this: waiting a few seconds will not help.
      headers: { 'x-should-retry': 'false' },
    });
  }

  /**
   * Replaces the reservation with what the request actually cost. Never throws; calling it (or `release`)
   * again for the same reservation does nothing.
   */
  async settle(reservation: BudgetReservation, actualUsd: number, actualTokens: number): Promise<void> {
    await this.#finish(reservation, toNano(actualUsd), Math.max(0, Math.ceil(actualTokens)));
  }

  /** Gives the whole reservation back (the call failed before costing anything). Never throws. */
  async release(reservation: BudgetReservation): Promise<void> {
    await this.#finish(reservation, 0, 0);
  }

  async #finish(reservation: BudgetReservation, usdNano: number, tokens: number) {
    const state = this.#states.get(reservation);
    if (!state || state.done) return;
    state.done = true;
    try {
      await state.backend.settle(state.entries, reservation.id, usdNano, tokens, this.#now().getTime());
    } catch (err) {
      // The reservation expires on its own; the spend is taken from the ledger at the next rebuild.
      this.#logger?.warn({ err, requestId: reservation.requestId }, 'could not settle a budget reservation');
      for (const e of state.entries) this.#stale.add(subjectKey(e.budget));
    }
  }

  /**
   * Recomputes the subject's spend for the current day and month from the usage ledger and resets the fast
   * counters to it (reservations in progress are kept). Returns what the ledger holds.
   */
  async reconcile(subject: Subject): Promise<Record<BudgetPeriod, { usd: number; tokens: number }>> {
    const now = this.#now();
    const backend = this.#redisCounters ?? this.#memoryCounters;
    const result = await this.#reconcileOn(backend, subject, now);
    this.#stale.delete(subjectKey(subject));
    return result;
  }

  async #reconcileOn(backend: CounterBackend, subject: Subject, now: Date) {
    const result = {} as Record<BudgetPeriod, { usd: number; tokens: number }>;
    await this.flushLedger?.();
    for (const period of ['day', 'month'] as const) {
      const window = budgetWindow(period, now);
      const spent = await ledgerSpend(this.#db, subject, window);
      const name = counterName({ ...subject, period }, window);
      const expireAtMs = Date.parse(window.end) + COUNTER_GRACE_MS;
      await backend.init({ name, expireAtMs }, toNano(spent.usd), spent.tokens, true, now.getTime());
      result[period] = spent;
    }
    return result;
  }

  /** Each budget of the subject with its current window's spend and reservations (usage API, tests). */
  async status(subject: Subject): Promise<BudgetStatus[]> {
    const budgets = await this.store.list(subject.scope, subject.subjectId);
    const now = this.#now();
    const backend = this.#redisCounters ?? this.#memoryCounters;
    const out: BudgetStatus[] = [];
    for (const entry of this.#entries(budgets, now, 0, 0)) {
      let counters = await backend.read(entry.name, now.getTime());
      if (!counters) {
        await this.#rebuild(backend, entry);
        counters = await backend.read(entry.name, now.getTime());
      }
      out.push({
        ...entry.budget,
        window: entry.window,
        spentUsd: fromNano(counters?.usdNano ?? 0),
        spentTokens: counters?.tokens ?? 0,
        reservedUsd: fromNano(counters?.reservedNano ?? 0),
        reservedTokens: counters?.reservedTokens ?? 0,
      });
    }
    return out;
  }
}

function counterName(subject: Subject & { period: BudgetPeriod }, window: BudgetWindow): string {
  return `${subject.scope}:${subject.subjectId}:${subject.period}:${window.id}`;
}

/** Redis is only given TTLs, computed on the service's clock. */
function ttl(entry: Pick<Entry, 'expireAtMs'>, nowMs: number): number {
  return Math.max(1000, Math.round(entry.expireAtMs - nowMs));
}

function subjectKey(subject: Subject): string {
  return `${subject.scope}:${subject.subjectId}`;
}

const usd = (value: number) => `$${value.toFixed(value >= 0.01 || value === 0 ? 2 : 6)}`;

/**
 * What the ledger says the subject spent in the window: the same query on SQLite and PostgreSQL (ISO
 * timestamps compare as text).
 */
export async function ledgerSpend(
  db: Db,
  subject: Subject,
  window: Pick<BudgetWindow, 'start' | 'end'>,
): Promise<{ usd: number; tokens: number }> {
  const row = await db
    .selectFrom('usage_records')
    .select([
      sql<number | string | null>`sum(cost_usd)`.as('usd'),
      sql<number | string | null>`sum(prompt_tokens + completion_tokens)`.as('tokens'),
    ])
    .where(subject.scope === 'key' ? 'api_key_id' : 'user_id', '=', subject.subjectId)
    .where('created_at', '>=', window.start)
    .where('created_at', '<', window.end)
    .executeTakeFirst();
  return { usd: Number(row?.usd ?? 0), tokens: Number(row?.tokens ?? 0) };
}
