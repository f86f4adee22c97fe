import { readFile } from 'node:fs/promises';
import { importPKCS8, SignJWT } from 'jose';
import { ProviderError } from '../errors.js';
import { LIST_TIMEOUT_MS, upstreamRequest, withoutSecrets } from '../http.js';
import { type Expiring, RefreshingCredential } from '../refreshing-credential.js';

/** Vertex AI's OAuth scope. */
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

interface ServiceAccountKey {
  type?: string;
  client_email?: string;
  private_key?: string;
  private_key_id?: string;
  token_uri?: string;
}

/**
 * Google access tokens for Vertex AI, from a service-account key file (GOOGLE_APPLICATION_CREDENTIALS) or, without
 * one, the metadata server of the GCE VM / GKE pod (workload identity). Cached and renewed ahead of expiry by
 * RefreshingCredential (Google's tokens last an hour).
 *
 * Service account (https://developers.google.com/identity/protocols/oauth2/service-account#httprest): an RS256
 * JWT `{iss: client_email, scope, aud: token_uri, iat, exp ≤ iat + 1h}` signed with the key (by `jose`), POSTed
 * form-encoded as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=…` to the key's `token_uri`.
 * Metadata server (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications):
 * `GET http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token` with
 * `Metadata-Flavor: Google` (GCE_METADATA_HOST overrides the host, as Google's client libraries allow).
 *
 * Written here rather than taken from google-auth-library: that brings gaxios, gcp-metadata, gtoken and their
 * HTTP stacks for one signed JWT and one form POST, and `jose` is already here.
 */
export class GoogleTokenSource {
  readonly #provider: string;
  readonly #credentialsFile: string | undefined;
  readonly #metadataHost: string;
  readonly #now: () => number;
  #key: ServiceAccountKey | undefined;
  readonly #token: RefreshingCredential<string>;

  constructor(
    provider: string,
    options: { credentialsFile?: string | undefined; metadataHost?: string | undefined; now?: () => number },
  ) {
    this.#provider = provider;
    this.#credentialsFile = options.credentialsFile;
    this.#metadataHost = options.metadataHost ?? 'metadata.google.internal';
    this.#now = options.now ?? Date.now;
    this.#token = new RefreshingCredential(() => this.#renew(), { now: this.#now });
  }

  /** What to keep out of messages: the private key and the current token. */
  secrets(): string[] {
    return [this.#key?.private_key, this.#token.current].filter((s): s is string => !!s);
  }

  token(): Promise<string> {
    return this.#token.get();
  }

  async #renew(): Promise<Expiring<string>> {
    const issuedAt = this.#now();
    const { status, body } = this.#credentialsFile
      ? await this.#exchangeJwt(issuedAt)
      : await this.#metadata();
    if (status !== 200 || typeof body.access_token !== 'string') {
      const why = body.error
        ? `${body.error}${body.error_description ? `: ${body.error_description}` : ''}`
        : `HTTP ${status}`;
      const source = this.#credentialsFile ? 'the service account' : 'the metadata server';
      throw this.#error(`Google refused ${source}'s credentials (${why})`, status >= 500 || status === 429);
    }
    const lifetimeMs = Math.max(1, Number(body.expires_in ?? 3600)) * 1000;
    return { value: body.access_token, issuedAt, expiresAt: issuedAt + lifetimeMs };
  }

  async #exchangeJwt(issuedAt: number) {
    const key = await this.#loadKey();
    const tokenUri = key.token_uri ?? 'https://oauth2.googleapis.com/token';
    const iat = Math.floor(issuedAt / 1000);
    let assertion: string;
    try {
      assertion = await new SignJWT({ scope: CLOUD_PLATFORM_SCOPE })
        .setProtectedHeader({
          alg: 'RS256',
          typ: 'JWT',
          ...(key.private_key_id ? { kid: key.private_key_id } : {}),
        })
        .setIssuer(key.client_email!)
        .setAudience(tokenUri)
        .setIssuedAt(iat)
        .setExpirationTime(iat + 3600)
        .sign(await importPKCS8(key.private_key!, 'RS256'));
    } catch (err) {
      throw this.#error(`the service-account key cannot sign: ${(err as Error).message}`, false);
    }
    const form = new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      assertion,
    }).toString();
    return this.#request(
      new URL(tokenUri),
      'POST',
      {
        'content-type': 'application/x-www-form-urlencoded',
      },
      form,
    );
  }

  #metadata() {
    const url = new URL(
      `http://${this.#metadataHost}/computeMetadata/v1/instance/service-accounts/default/token`,
    );
    return this.#request(url, 'GET', { 'metadata-flavor': 'Google' });
  }

  async #request(url: URL, method: 'GET' | 'POST', headers: Record<string, string>, body?: string) {
    let status: number;
    let text: string;
    try {
      const response = await upstreamRequest(
        url,
        {
          method,
          headers: { ...headers, accept: 'application/json' },
          ...(body === undefined ? {} : { body }),
          headersTimeout: LIST_TIMEOUT_MS,
          bodyTimeout: LIST_TIMEOUT_MS,
        },
        LIST_TIMEOUT_MS,
      );
      status = response.statusCode;
      text = await response.body.text();
    } catch (err) {
      throw this.#error(`could not reach ${url.host} for an access token: ${(err as Error).message}`, true);
    }
    let parsed: {
      access_token?: string;
      expires_in?: number | string;
      error?: string;
      error_description?: string;
    } = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // reported by the caller
    }
    return { status, body: parsed };
  }

  async #loadKey(): Promise<ServiceAccountKey> {
    if (this.#key) return this.#key;
    let key: ServiceAccountKey;
    try {
      key = JSON.parse(await readFile(this.#credentialsFile!, 'utf8'));
    } catch (err) {
      throw this.#error(
        `GOOGLE_APPLICATION_CREDENTIALS (${this.#credentialsFile}) is not a readable JSON key file: ${(err as Error).message}`,
        false,
      );
    }
    if (key?.type !== 'service_account' || !key.client_email || !key.private_key)
      throw this.#error(
        'GOOGLE_APPLICATION_CREDENTIALS is not a service-account key (type service_account with client_email and private_key)',
        false,
      );
    this.#key = key;
    return key;
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
