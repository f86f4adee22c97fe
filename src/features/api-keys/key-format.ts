import { hash, randomBytes } from 'node:crypto';

const KEY_PATTERN = /^ck-[A-Za-z0-9_-]{43}$/;
const PREFIX_LENGTH = 11; // "ck-" + 8 characters: enough to tell keys apart in a list, useless to an attacker

/** A new key: 256 random bits. Only its hash is stored; the caller shows the key once. */
export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const key = `ck-${randomBytes(32).toString('base64url')}`;
  return { key, prefix: key.slice(0, PREFIX_LENGTH), hash: hashApiKey(key) };
}

/**
 * SHA-256, not argon2: keys carry 256 bits of entropy, so a slow hash adds nothing but latency on every
 * authenticated request.
 */
export const hashApiKey = (key: string) => hash('sha256', key, 'hex');

/** Lets malformed keys be refused without a database query. */
export const isWellFormedApiKey = (value: string) => KEY_PATTERN.test(value);

export const looksLikeApiKey = (value: string) => value.startsWith('ck-');
