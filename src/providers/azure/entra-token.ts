import { ProviderError } from '../errors.js';
import { LIST_TIMEOUT_MS, upstreamRequest, withoutSecrets } from '../http.js';
import { type Expiring, RefreshingCredential } from '../refreshing-credential.js';

export interface EntraCredentials {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** AZURE_AUTHORITY_HOST, as Azure's identity libraries read it; default https://login.microsoftonline.com */
  authorityHost?: string | undefined;
  /** The token's audience; Azure OpenAI's is https://cognitiveservices.azure.com/.default */
  scope?: string | undefined;
}

/**
 * Microsoft Entra ID client-credentials tokens (https://learn.microsoft.com/entra/identity-platform/
 * v2-oauth2-client-creds-grant-flow): one POST to `{authority}/{tenant}/oauth2/v2.0/token`, cached and renewed
 * ahead of expiry by RefreshingCredential (five minutes before, or at half the lifetime of a shorter token).
 *
 * Written here rather than taken from @azure/identity: that package brings MSAL for Node and for browsers,
 * Azure's HTTP pipeline and `open` (a dozen packages, megabytes) for one form POST, and MSAL insists on an HTTPS
 * authority with instance discovery, which a private endpoint or a test's local fake cannot offer.
 */
export class EntraTokenSource {
  readonly #url: URL;
  readonly #form: string;
  readonly #provider: string;
  readonly #secret: string;
  readonly #now: () => number;
  readonly #token: RefreshingCredential<string>;

  constructor(provider: string, credentials: EntraCredentials, now: () => number = Date.now) {
    const authority = (credentials.authorityHost ?? 'https://login.microsoftonline.com').replace(/\/+$/, '');
    this.#url = new URL(`${authority}/${encodeURIComponent(credentials.tenantId)}/oauth2/v2.0/token`);
    this.#form = new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: credentials.clientId,
      client_secret: credentials.clientSecret,
      scope: credentials.scope ?? 'https://cognitiveservices.azure.com/.default',
    }).toString();
    this.#provider = provider;
    this.#secret = credentials.clientSecret;
    this.#now = now;
    this.#token = new RefreshingCredential(() => this.#fetch(), { now });
  }

  /** Secrets to keep out of messages: the client secret and the current token. */
  secrets(): string[] {
    const token = this.#token.current;
    return token ? [this.#secret, token] : [this.#secret];
  }

  token(): Promise<string> {
    return this.#token.get();
  }

  async #fetch(): Promise<Expiring<string>> {
    const issuedAt = this.#now();
    let status: number;
    let text: string;
    try {
      const response = await upstreamRequest(
        this.#url,
        {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: this.#form,
          headersTimeout: LIST_TIMEOUT_MS,
          bodyTimeout: LIST_TIMEOUT_MS,
        },
        LIST_TIMEOUT_MS,
      );
      status = response.statusCode;
      text = await response.body.text();
    } catch (err) {
      throw this.#error(`could not reach the Entra ID token endpoint: ${(err as Error).message}`, true);
    }
    let body: {
      access_token?: string;
      expires_in?: number | string;
      error?: string;
      error_description?: string;
    } = {};
    try {
      body = JSON.parse(text);
    } catch {
      // reported below
    }
    if (status !== 200 || typeof body.access_token !== 'string') {
      const why = body.error
        ? `${body.error}: ${(body.error_description ?? '').split('\n')[0]}`
        : `HTTP ${status}`;
      // A refused client (400/401) stays refused; the endpoint's own 5xx or 429 may pass.
      throw this.#error(
        `Entra ID refused Colloquy's client credentials (${why})`,
        status >= 500 || status === 429,
      );
    }
    const lifetimeMs = Math.max(1, Number(body.expires_in ?? 3600)) * 1000;
    return { value: body.access_token, issuedAt, expiresAt: issuedAt + lifetimeMs };
  }

  #error(message: string, retryable: boolean) {
    return withoutSecrets(
      new ProviderError(`upstream ${this.#provider}: ${message}`, {
        provider: this.#provider,
        status: 502,
        code: 'upstream_auth_failed',
        type: 'server_error',
        retryable,
        kind: 'upstream',
      }),
      this.secrets(),
    );
  }
}
