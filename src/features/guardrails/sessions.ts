import type { Redis } from 'ioredis';
import type { Logger } from '../../core/logger.js';

/**
 * Sessions for the minor-mode break reminder (issue 22: "a break reminder after a configurable session length,
 * default 3 hours"). A session is a user's continuous activity: their requests (any conversation, any
 * protocol), each less than SESSION_GAP_MS after the one before; a longer pause starts a new session. Once a
 * session has lasted `every` (the guardrail's `break_after_minutes`), the next answer carries the break
 * reminder, and again each time another `every` has passed.
 */
export const SESSION_GAP_MS = 30 * 60_000;

export interface BreakClock {
  /** Records activity of `subject` now; true when this answer is the one that carries the break reminder. */
  due(subject: string, guardrail: string, everyMs: number): Promise<boolean>;
}

interface Session {
  start: number;
  last: number;
  /** How many periods of `every` have been reminded of already. */
  reminded: number;
}

/** One replica's sessions, in memory (no Redis): bounded, the idlest dropped first. */
export class MemoryBreakClock implements BreakClock {
  readonly #sessions = new Map<string, Session>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly max = 100_000,
  ) {}

  async due(subject: string, guardrail: string, everyMs: number): Promise<boolean> {
    const key = `${guardrail}\n${subject}`;
    const now = this.now();
    let session = this.#sessions.get(key);
    if (!session || now - session.last >= SESSION_GAP_MS) session = { start: now, last: now, reminded: 0 };
    session.last = now;
    const period = Math.floor((now - session.start) / everyMs);
    const remind = period >= 1 && period > session.reminded;
    if (remind) session.reminded = period;
    // Re-inserted: the Map's order is then least recently active first, which is what is dropped.
    this.#sessions.delete(key);
    this.#sessions.set(key, session);
    if (this.#sessions.size > this.max) this.#sessions.delete(this.#sessions.keys().next().value!);
    return remind;
  }
}

/** The same rule in one atomic step on Redis, so every replica sees one session per user. */
const DUE = `
local s = redis.call('HMGET', KEYS[1], 'start', 'last', 'reminded')
local now = tonumber(ARGV[1]); local gap = tonumber(ARGV[2]); local every = tonumber(ARGV[3])
local start = tonumber(s[1]); local last = tonumber(s[2]); local reminded = tonumber(s[3]) or 0
if not start or not last or now - last >= gap then start = now; reminded = 0 end
local period = math.floor((now - start) / every)
local remind = 0
if period >= 1 and period > reminded then remind = 1; reminded = period end
redis.call('HSET', KEYS[1], 'start', start, 'last', now, 'reminded', reminded)
redis.call('PEXPIRE', KEYS[1], gap)
return remind
`;

/** Sessions shared by the replicas through Redis; on a Redis error, this replica's memory answers. */
export class RedisBreakClock implements BreakClock {
  readonly #fallback: MemoryBreakClock;

  constructor(
    private readonly redis: Redis,
    private readonly now: () => number = Date.now,
    private readonly logger?: Logger,
  ) {
    this.#fallback = new MemoryBreakClock(now);
  }

  async due(subject: string, guardrail: string, everyMs: number): Promise<boolean> {
    try {
      const answer = await this.redis.eval(
        DUE,
        1,
        `colloquy:session:${guardrail}:${subject}`,
        String(this.now()),
        String(SESSION_GAP_MS),
        String(everyMs),
      );
      return Number(answer) === 1;
    } catch (err) {
      this.logger?.warn({ err }, 'could not track a session on Redis; tracking it in memory');
      return this.#fallback.due(subject, guardrail, everyMs);
    }
  }
}
