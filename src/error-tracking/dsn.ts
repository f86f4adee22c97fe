/**
 * A Sentry DSN, `{scheme}://{public_key}[:{secret}]@{host}[:{port}][/{path}]/{project_id}` (Sentry's and
 * GlitchTip's form, https://develop.sentry.dev/sdk/overview/#parsing-the-dsn). Checked without loading the SDK,
 * by the configuration and by `doctor`.
 */
export const SENTRY_DSN_PATTERN = '^https?://[^:@/\\s]+(:[^@/\\s]*)?@[^/@\\s]+(/[^\\s]*)?/[0-9]+/?$';

const DSN = new RegExp(SENTRY_DSN_PATTERN);

export const isWellFormedDsn = (dsn: string): boolean => DSN.test(dsn);

/** The DSN without its key, for messages: `https://sentry.example.com/42`. */
export function describeDsn(dsn: string): string {
  try {
    const url = new URL(dsn);
    return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
  } catch {
    return '(unparsable)';
  }
}
