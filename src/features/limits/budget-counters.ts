import type { Budget } from './budget-store.js';
import type { BudgetWindow } from './budget-window.js';

/** Money is counted in integer nano-dollars: exact sums, no float drift, and safe in Lua and Redis. */
const NANO = 1e9;
export const toNano = (usd: number) => Math.max(0, Math.round(usd * NANO));
export const fromNano = (nano: number) => nano / NANO;

/** One budget a reservation counts against, in store units. */
export interface Entry {
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

export type ReserveOutcome =
  | { ok: true }
  | { ok: false; missing: number }
  | { ok: false; refused: number; kind: 'usd' | 'tokens'; spent: number; reserved: number };

export interface Counters {
  usdNano: number;
  tokens: number;
  reservedNano: number;
  reservedTokens: number;
}

/** Where the fast counters live: Redis (shared by replicas) or this process. */
export interface CounterBackend {
  readonly kind: 'redis' | 'memory';
  /** Atomically: drop expired reservations, check every entry fits, then reserve in all or none. */
  reserve(entries: Entry[], id: string, nowMs: number, expiresAtMs: number): Promise<ReserveOutcome>;
  /** Removes the reservation (if still there) and adds the actual spend to counters that exist. */
  settle(
    entries: Pick<Entry, 'name' | 'expireAtMs'>[],
    id: string,
    usdNano: number,
    tokens: number,
    nowMs: number,
  ): Promise<void>;
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

/** Redis is only given TTLs, computed on the service's clock. */
export function ttl(entry: Pick<Entry, 'expireAtMs'>, nowMs: number): number {
  return Math.max(1000, Math.round(entry.expireAtMs - nowMs));
}

interface MemoryCounter extends Counters {
  reservations: Map<string, { usdNano: number; tokens: number; expiresAtMs: number }>;
  expireAtMs: number;
}

/** The same semantics in this process: each operation runs without an await, so it is atomic here. */
export class MemoryCounters implements CounterBackend {
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

  async settle(entries: Pick<Entry, 'name'>[], id: string, usdNano: number, tokens: number): Promise<void> {
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
