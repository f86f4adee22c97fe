import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Time-ordered ids (`usr_0m3k…`): the millisecond timestamp in fixed-width base 36 then 80 random bits, so
 * ids sort by creation in both SQLite and PostgreSQL and serve as pagination cursors.
 */
export function newId(prefix: string): string {
  const time = Date.now().toString(36).padStart(9, '0');
  const bytes = randomBytes(10);
  let random = '';
  for (const byte of bytes) random += ALPHABET[byte % 36];
  return `${prefix}_${time}${random}`;
}

export const nowIso = (): string => new Date().toISOString();
