/**
 * What leaves the process for the error tracker. Colloquy attaches no request data (no bodies, headers,
 * cookies or query strings) and enables no integration that collects it; this is the second line: whatever
 * an error message or a future integration carries, prompts, completions, bodies, headers, local variables
 * and credentials are removed or masked before an event is sent.
 */
export const FILTERED = '[Filtered]';

/** Fields that hold request or model content: dropped whole. */
const CONTENT_KEYS =
  /^(?:request|body|data|messages|prompt|prompts|content|completion|choices|input|output|system|headers|cookies?|query_string|env|vars|extra|breadcrumbs)$/i;

/** Fields whose value is a credential, masked. Ids (`api_key_id`, `userId`) are not credentials. */
const CREDENTIAL_KEYS =
  /authorization|cookie|password|passwd|secret|token|api[-_]?key|credential|dsn|x-api-key/i;
const ID_KEY = /(?:_id|Id|_ids)$/;

/** Credentials recognisable by shape, wherever they appear in text. */
const CREDENTIAL_TEXT: RegExp[] = [
  /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi,
  // user:password@ in URLs (database and Redis URLs in driver messages).
  /(?<=[a-z][a-z0-9+.-]*:\/\/)[^\s/@:]+:[^\s/@]+(?=@)/gi,
  // Provider and Colloquy key shapes: sk-…, sk-ant-…, ck_…, hf_…, AKIA…
  /\b(?:sk-[A-Za-z0-9_-]{8,}|ck_[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|AKIA[0-9A-Z]{16})/g,
  /([?&](?:key|api[-_]?key|token|access_token|sig|signature)=)[^&\s]+/gi,
];

export function scrubText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 8) out = out.split(secret).join(FILTERED);
  for (const pattern of CREDENTIAL_TEXT) {
    out = out.replace(pattern, (_match, prefix?: string) =>
      typeof prefix === 'string' && /^[?&]/.test(prefix)
        ? `${prefix}${FILTERED}`
        : typeof prefix === 'string' && /^(bearer|basic)$/i.test(prefix)
          ? `${prefix} ${FILTERED}`
          : FILTERED,
    );
  }
  return out;
}

function scrubValue(value: unknown, secrets: readonly string[], depth: number): unknown {
  if (typeof value === 'string') return scrubText(value, secrets);
  if (depth > 12 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, secrets, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    if (CONTENT_KEYS.test(key)) continue;
    if (CREDENTIAL_KEYS.test(key) && !ID_KEY.test(key)) {
      out[key] = FILTERED;
      continue;
    }
    out[key] = scrubValue(inner, secrets, depth + 1);
  }
  return out;
}

/** The event as it may be sent: content dropped, credentials masked, the user reduced to its id. */
export function scrubEvent<T extends object>(event: T, secrets: readonly string[]): T {
  const user = (event as { user?: { id?: unknown } }).user;
  const scrubbed = scrubValue(event, secrets, 0) as T & { user?: unknown };
  if (user !== undefined) scrubbed.user = user.id === undefined ? undefined : { id: String(user.id) };
  return scrubbed;
}
