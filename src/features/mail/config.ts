import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import Type, { type Static } from 'typebox';

/**
 * Mail settings (issue 24), spread into `EnvSchema` (`...MAIL_ENV`) and listed in `.env.example`. Mail is on
 * when SMTP_HOST is set; everything that sends mail (password reset, verification, invitations, notices)
 * answers 503 `mail_not_configured` without it, and GET /api/auth/options tells the console to hide it.
 */
const int = (description: string, min: number, max: number, dflt?: number) =>
  Type.Integer({ description, minimum: min, maximum: max, ...(dflt === undefined ? {} : { default: dflt }) });

export const MAIL_ENV = {
  SMTP_HOST: Type.Optional(
    Type.String({ minLength: 1, description: 'the SMTP server host name or address' }),
  ),
  SMTP_PORT: Type.Optional(int('the SMTP port, 1 to 65535 (default 587, 465 with SMTP_TLS=tls)', 1, 65535)),
  SMTP_USERNAME: Type.Optional(Type.String({ minLength: 1, description: 'the SMTP user name' })),
  SMTP_PASSWORD: Type.Optional(Type.String({ minLength: 1, description: 'the SMTP password' })),
  SMTP_FROM: Type.Optional(
    Type.String({ minLength: 3, description: 'the sender, e.g. "Colloquy <no-reply@example.com>"' }),
  ),
  SMTP_TLS: Type.Optional(
    Type.Union([Type.Literal('starttls'), Type.Literal('tls'), Type.Literal('none')], {
      description: 'starttls (default), tls, or none (only to a relay on a loopback address)',
    }),
  ),
  SMTP_CA_FILE: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'a PEM file of CA certificates the SMTP server’s is checked against',
    }),
  ),
  PUBLIC_URL: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'the URL users reach Colloquy at, e.g. https://chat.example.com',
    }),
  ),
  REQUIRE_EMAIL_VERIFICATION: Type.Optional(
    Type.Boolean({
      description: 'true or false: self sign-ups must confirm their address by mail before signing in',
    }),
  ),
  MAIL_RETRY_INITIAL_MS: int(
    'milliseconds before the first retry of a failed mail (doubling), 100 to 3600000',
    100,
    3_600_000,
    30_000,
  ),
  MAIL_POLL_INTERVAL_MS: int('milliseconds between outbox scans, 50 to 600000', 50, 600_000, 5_000),
};

const MailEnvSchema = Type.Object(MAIL_ENV);
export type MailEnv = Partial<Static<typeof MailEnvSchema>>;

export type SmtpTls = 'starttls' | 'tls' | 'none';

export interface MailConfig {
  host: string;
  port: number;
  tls: SmtpTls;
  username: string | undefined;
  password: string | undefined;
  from: string;
  /** PEM CA certificates (SMTP_CA_FILE), or undefined for the system's. */
  ca: string | undefined;
  publicUrl: string;
  retryInitialMs: number;
  pollIntervalMs: number;
}

/** A relay reached without TLS must be on this machine: credentials and reset links never cross a network in clear. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}

/**
 * The mail configuration, or undefined when SMTP_HOST is unset. Problems are pushed to `problems` (one
 * line per variable, like the rest of the configuration).
 */
export function mailConfigFromEnv(env: MailEnv, problems: string[]): MailConfig | undefined {
  if (env.REQUIRE_EMAIL_VERIFICATION && !env.SMTP_HOST)
    problems.push('REQUIRE_EMAIL_VERIFICATION: needs mail; set SMTP_HOST (and SMTP_FROM, PUBLIC_URL)');
  if (!env.SMTP_HOST) return undefined;
  const tls = env.SMTP_TLS ?? 'starttls';
  if (tls === 'none' && !isLoopback(env.SMTP_HOST))
    problems.push(
      `SMTP_TLS: none is only allowed to a relay on a loopback address (got SMTP_HOST=${env.SMTP_HOST}); use starttls or tls`,
    );
  if (!env.SMTP_FROM)
    problems.push('SMTP_FROM: required with SMTP_HOST; expected e.g. "Colloquy <no-reply@example.com>"');
  if (!env.PUBLIC_URL)
    problems.push(
      'PUBLIC_URL: required with SMTP_HOST (links in mail are built on it); e.g. https://chat.example.com',
    );
  if (Boolean(env.SMTP_USERNAME) !== Boolean(env.SMTP_PASSWORD))
    problems.push('SMTP_PASSWORD: SMTP_USERNAME and SMTP_PASSWORD are set together or not at all');
  let ca: string | undefined;
  if (env.SMTP_CA_FILE) {
    if (existsSync(env.SMTP_CA_FILE)) ca = readFileSync(env.SMTP_CA_FILE, 'utf8');
    else problems.push(`SMTP_CA_FILE: ${env.SMTP_CA_FILE} does not exist`);
  }
  return {
    host: env.SMTP_HOST,
    port: env.SMTP_PORT ?? (tls === 'tls' ? 465 : tls === 'none' ? 25 : 587),
    tls,
    username: env.SMTP_USERNAME,
    password: env.SMTP_PASSWORD,
    from: env.SMTP_FROM ?? '',
    ca,
    publicUrl: (env.PUBLIC_URL ?? '').replace(/\/+$/, ''),
    retryInitialMs: env.MAIL_RETRY_INITIAL_MS ?? 30_000,
    pollIntervalMs: env.MAIL_POLL_INTERVAL_MS ?? 5_000,
  };
}
