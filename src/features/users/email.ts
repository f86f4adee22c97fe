import { fullFormats } from 'ajv-formats/dist/formats.js';

/** The longest email an account may have (RFC 5321's path limit), on the API and the CLI alike. */
export const EMAIL_MAX_LENGTH = 254;

/**
 * Whether an email is one the API accepts. The API's schema (`Email` in http/schemas.ts) is checked by
 * Fastify's Ajv with ajv-formats in its default (full) mode: this is the same regular expression, so
 * `colloquy users create` refuses exactly what `POST /api/users` refuses (it created `bad-email`, issue 19).
 */
export function isAcceptableEmail(email: string): boolean {
  return email.length <= EMAIL_MAX_LENGTH && (fullFormats.email as RegExp).test(email);
}
