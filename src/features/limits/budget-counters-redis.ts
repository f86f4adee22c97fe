import type { Redis } from 'ioredis';
import {
  type CounterBackend,
  type Counters,
  type Entry,
  type ReserveOutcome,
  ttl,
} from './budget-counters.js';

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

export class RedisCounters implements CounterBackend {
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

  async settle(
    entries: Pick<Entry, 'name' | 'expireAtMs'>[],
    id: string,
    usdNano: number,
    tokens: number,
    nowMs: number,
  ): Promise<void> {
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
