import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
const CODES = Array.from(ALPHABET, (c) => c.charCodeAt(0));
/** Characters of randomness per id (written out in newId). */
const RANDOM_BYTES = 10;

// Random bytes are drawn 4 KiB at a time: a call into the CSPRNG per id cost more than the rest of the id
// (several ids are made per request). Each byte is used once.
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

/** The offset of `count` pool bytes no one has used (refilling the pool from the CSPRNG when it runs out). */
function take(count: number): number {
  if (poolOffset + count > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const start = poolOffset;
  poolOffset += count;
  return start;
}

/**
 * Time-ordered ids (`usr_0m3k…`): the millisecond timestamp in fixed-width base 36 then 80 random bits, so
 * ids sort by creation in both SQLite and PostgreSQL and serve as pagination cursors.
 */
export function newId(prefix: string): string {
  const time = clock().base36;
  const o = take(RANDOM_BYTES);
  // One string for the ten characters: appending them one by one made a new string per character (~200 B
  // an id, two ids a request).
  const random = String.fromCharCode(
    CODES[pool[o]! % 36]!,
    CODES[pool[o + 1]! % 36]!,
    CODES[pool[o + 2]! % 36]!,
    CODES[pool[o + 3]! % 36]!,
    CODES[pool[o + 4]! % 36]!,
    CODES[pool[o + 5]! % 36]!,
    CODES[pool[o + 6]! % 36]!,
    CODES[pool[o + 7]! % 36]!,
    CODES[pool[o + 8]! % 36]!,
    CODES[pool[o + 9]! % 36]!,
  );
  return `${prefix}_${time}${random}`;
}

/** `bytes` unpredictable bytes (the CSPRNG's, from the shared pool) in hex: ids that need not sort. */
export function randomHex(bytes: number): string {
  if (bytes > pool.length) throw new RangeError('randomHex: more bytes than the pool holds');
  const start = take(bytes);
  return pool.toString('hex', start, start + bytes);
}

export const nowIso = (): string => clock().iso;

// A busy server asks for the time several times per request, thousands of times per millisecond: each
// millisecond's two renderings are made once (Date + toISOString was ~1 % of a request's CPU).
let last = { ms: -1, base36: '', iso: '' };
function clock() {
  const ms = Date.now();
  if (ms !== last.ms)
    last = { ms, base36: ms.toString(36).padStart(9, '0'), iso: new Date(ms).toISOString() };
  return last;
}
