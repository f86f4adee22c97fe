import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
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
  const start = take(RANDOM_BYTES);
  let random = '';
  for (let i = start; i < start + RANDOM_BYTES; i++) random += ALPHABET[pool[i]! % 36];
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
