import type { Redis } from 'ioredis';
import { AppError } from '../../core/errors.js';
import { newId } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { Metrics } from '../../metrics/registry.js';
import type { Principal } from '../auth/principal.js';
import type { PriceTable } from '../usage/prices.js';
import { type CounterBackend, type Entry, fromNano, MemoryCounters, toNano } from './budget-counters.js';
import { RedisCounters } from './budget-counters-redis.js';
import { ledgerSpend } from './budget-ledger.js';
import { type Budget, BudgetStore } from './budget-store.js';
import { type BudgetWindow, budgetWindow, counterName, type Subject, subjectKey } from './budget-window.js';
import type { LimitInvalidations } from './invalidations.js';
import type { BudgetPeriod, LimitScope } from './tables.js';

// The service's collaborators, by responsibility: windows and counter names (budget-window), the counters'
// two backends (budget-counters: memory; budget-counters-redis: Lua), the ledger's sums (budget-ledger).
export { type BudgetWindow, budgetWindow, ledgerSpend, type Subject };

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

export interface BudgetReservation {
  readonly id: string;
  readonly requestId: string;
  /** The budgets this request counts against (empty: nothing to enforce). */
  readonly budgets: readonly Budget[];
}

/**
 * What identifies a reservation in the shared (Redis) counters, as JSON: stored with a conversation
 * generation so that the replica taking over a dead one's generation settles it (takeover.ts), instead of
 * the reservation holding budget until its TTL.
 */
export interface StoredReservation {
  id: string;
  counters: { name: string; expireAtMs: number }[];
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
  /** Announces budget changes to every replica (used when the service makes its own store). */
  invalidations?: LimitInvalidations | undefined;
  /** Its own store's cache TTL (LIMITS_CACHE_TTL_MS when unset). */
  cacheTtlMs?: number | undefined;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  /** Injectable clock (tests move across day and month boundaries). */
  now?: () => Date;
  /** TIMEZONE: the zone whose midnights start a new day and month (default UTC). */
  timeZone?: string;
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
  readonly #timeZone: string;
  readonly #ttlMs: number;
  readonly #states = new WeakMap<BudgetReservation, ReservationState>();
  /** Reservations of requests admitted with no budget: who they were, and when (see chargeUnreserved). */
  readonly #unreserved = new WeakMap<BudgetReservation, { principal: Principal; changes: number }>();
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
    this.store =
      options.store ??
      new BudgetStore(options.db, { invalidations: options.invalidations, cacheTtlMs: options.cacheTtlMs });
    this.#redisCounters = options.redis
      ? new RedisCounters(options.redis, options.keyPrefix ?? 'colloquy:budget')
      : undefined;
    this.#failMode = options.failMode ?? 'open';
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
    this.#timeZone = options.timeZone ?? 'UTC';
    this.#ttlMs = options.reservationTtlMs ?? 15 * 60_000;
  }

  #entries(budgets: Budget[], now: Date, worstCaseUsd: number, worstCaseTokens: number): Entry[] {
    return budgets.map((budget) => {
      const window = budgetWindow(budget.period, now, this.#timeZone);
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
    if (principal.via === 'master_key') return { id: '', requestId: request.requestId, budgets: [] };
    // Read before the budgets are: a change announced from here on is one this request may have missed.
    const changes = this.store.changes;
    const budgets = await this.store.forPrincipal(principal);
    // Nothing to reserve against: no id to draw either. The worst case is read only past this point (the
    // caller may compute it lazily).
    if (budgets.length === 0) {
      const unreserved: BudgetReservation = { id: '', requestId: request.requestId, budgets };
      this.#unreserved.set(unreserved, { principal, changes });
      return unreserved;
    }
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
    // A worst case above the whole budget never fits, not even after the reset: say so, and what would fit
    // (without max_tokens, 4,096 output tokens are assumed).
    const neverFits = kind === 'usd' ? entry.addNano > entry.limitNano : entry.addTokens > entry.limitTokens;
    const when = neverFits
      ? 'this request alone is over the whole budget, even after it resets: set a lower max_tokens'
      : `it resets at ${window.end}`;
    return new AppError('budget_exceeded', `budget exceeded: ${what}; ${when}`, {
      // The OpenAI SDKs honour this: waiting a few seconds will not help.
      headers: { 'x-should-retry': 'false' },
    });
  }

  /** The reservation's identity in the shared counters; undefined when there is none to settle elsewhere. */
  describe(reservation: BudgetReservation): StoredReservation | undefined {
    const state = this.#states.get(reservation);
    // Counters in this process die with it: only Redis ones outlive a crash.
    if (!state || state.done || state.backend !== this.#redisCounters) return undefined;
    return {
      id: reservation.id,
      counters: state.entries.map((e) => ({ name: e.name, expireAtMs: e.expireAtMs })),
    };
  }

  /**
   * Settles a reservation made by another process (one that died before settling it) to what its request
   * cost. Call once per reservation (the takeover's conditional update ensures it). Never throws.
   */
  async settleStored(stored: StoredReservation, actualUsd: number, actualTokens: number): Promise<void> {
    if (!this.#redisCounters || stored.counters.length === 0) return;
    try {
      await this.#redisCounters.settle(
        stored.counters,
        stored.id,
        toNano(actualUsd),
        Math.max(0, Math.ceil(actualTokens)),
        this.#now().getTime(),
      );
    } catch (err) {
      // The reservation expires on its own; the spend is in the ledger, which a rebuild reads.
      this.#logger?.warn({ err, reservationId: stored.id }, 'could not settle a stored budget reservation');
    }
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
    const unreserved = this.#unreserved.get(reservation);
    if (unreserved) {
      this.#unreserved.delete(reservation);
      if (usdNano > 0 || tokens > 0)
        await this.#chargeLate(unreserved.principal, unreserved.changes, usdNano, tokens);
      return;
    }
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
   * Creates or replaces a budget (on every replica at once, through the store's invalidations) and resets its
   * counters to what the ledger holds. Counters outlive a budget that was removed (they expire with their
   * window) and are not kept while none exists, so without the reset a budget set again, or one set while
   * requests ran, would start from a stale count. Requests still in flight add to the fresh counters when
   * they end (see chargeUnreserved).
   */
  async set(budget: Budget): Promise<void> {
    await this.store.set(budget);
    try {
      await this.reconcile(budget);
    } catch (err) {
      this.#logger?.warn(
        { err },
        'could not reset budget counters from the ledger; they are rebuilt on next use',
      );
      this.#stale.add(subjectKey(budget));
    }
  }

  /**
   * Counts the cost of a request admitted without any budget (from `since`, the store's `changes` when it was
   * admitted) in the budgets its key or user has now, if one was set while it ran: on this replica or, through
   * the invalidations, on another. Without it, a request in flight when a budget is set (or served from a
   * cache that had not heard yet) is in the ledger but never in the counter, which then shows less spend
   * than /api/usage (issue 19, item 2). Only counters that exist are added to: a missing one is rebuilt from
   * the ledger, which holds this request. Never throws.
   */
  async chargeUnreserved(principal: Principal, since: number, usd: number, tokens: number): Promise<void> {
    if (principal.via === 'master_key') return;
    await this.#chargeLate(principal, since, toNano(usd), Math.max(0, Math.ceil(tokens)));
  }

  /**
   * Adds a call's cost to the principal's budgets after the fact, without a reservation (a guardrail's
   * classifier call, made on the caller's behalf): it may take a budget past its limit, refusing the next
   * request. Never throws.
   */
  async charge(principal: Principal, usd: number, tokens: number): Promise<void> {
    if (principal.via === 'master_key' || (usd <= 0 && tokens <= 0)) return;
    await this.#chargeLate(principal, undefined, toNano(usd), Math.max(0, Math.ceil(tokens)));
  }

  async #chargeLate(principal: Principal, since: number | undefined, usdNano: number, tokens: number) {
    if (this.store.changes === since) return;
    try {
      const budgets = await this.store.forPrincipal(principal);
      if (budgets.length === 0) return;
      const now = this.#now();
      const entries = this.#entries(budgets, now, 0, 0);
      const backend = this.#redisCounters ?? this.#memoryCounters;
      await backend.settle(entries, newId('bres'), usdNano, tokens, now.getTime());
    } catch (err) {
      this.#logger?.warn({ err }, 'could not count a request in a budget set while it ran');
      for (const b of await this.store.forPrincipal(principal).catch(() => []))
        this.#stale.add(subjectKey(b));
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
      const window = budgetWindow(period, now, this.#timeZone);
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

const usd = (value: number) => `$${value.toFixed(value >= 0.01 || value === 0 ? 2 : 6)}`;
