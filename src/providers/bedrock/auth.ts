import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { REFRESH_MARGIN_MS, RefreshingCredential } from '../refreshing-credential.js';

/** AWS credentials as the SDK's providers return them (@smithy/types' AwsCredentialIdentity). */
export interface AwsCredentialIdentity {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

export type CredentialSource = () => Promise<AwsCredentialIdentity>;

/** Credentials are refreshed this long before they expire, so no request is signed with ones about to lapse. */
export const REFRESH_BEFORE_MS = REFRESH_MARGIN_MS;

/**
 * AWS credentials, cached and refreshed before expiry: static keys from the configuration (with a session
 * token for temporary ones), else the AWS SDK's standard chain (environment, shared profiles, SSO, web
 * identity / IRSA on Kubernetes, ECS and EC2 instance roles). Concurrent calls share one refresh.
 */
export class AwsCredentials {
  readonly #credentials: RefreshingCredential<AwsCredentialIdentity>;

  constructor(source: CredentialSource, now: () => number = Date.now) {
    this.#credentials = new RefreshingCredential(
      async () => {
        const value = await source();
        return { value, expiresAt: value.expiration?.getTime() };
      },
      { now, marginMs: REFRESH_BEFORE_MS },
    );
  }

  static fromConfig(options: {
    accessKeyId?: string | undefined;
    secretAccessKey?: string | undefined;
    sessionToken?: string | undefined;
    profile?: string | undefined;
  }): AwsCredentials {
    if (options.accessKeyId && options.secretAccessKey) {
      const fixed: AwsCredentialIdentity = {
        accessKeyId: options.accessKeyId,
        secretAccessKey: options.secretAccessKey,
        ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}),
      };
      return new AwsCredentials(async () => fixed);
    }
    // Loaded on first use: the chain (SSO, STS, IMDS clients) is heavy for a server that never calls Bedrock.
    let chain: CredentialSource | undefined;
    return new AwsCredentials(async () => {
      chain ??= (await import('@aws-sdk/credential-provider-node')).defaultProvider(
        options.profile ? { profile: options.profile } : {},
      );
      return chain();
    });
  }

  /**
   * The current credentials, refreshed once they are within REFRESH_BEFORE_MS of expiring. A failed refresh
   * while they are still valid keeps them (and tries again on the next call) rather than failing the request.
   */
  get(): Promise<AwsCredentialIdentity> {
    return this.#credentials.get();
  }

  /** Secrets to scrub from error messages: the keys currently in use. */
  secrets(): string[] {
    const c = this.#credentials.current;
    return c ? [c.secretAccessKey, ...(c.sessionToken ? [c.sessionToken] : [])] : [];
  }
}

export interface SignableRequest {
  url: URL;
  headers: Record<string, string>;
  body: string;
}

/**
 * Signs requests with SigV4 for the `bedrock` service. The URL's path is already percent-encoded once
 * (`amazon.nova-lite-v1%3A0`); the signer encodes it again for the canonical request, as SigV4 requires
 * of every service but S3 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).
 * One signer per provider, so its cache of signing keys (one per day and credentials) is reused.
 */
export function createSigner(credentials: AwsCredentials, region: string) {
  const signer = new SignatureV4({
    service: 'bedrock',
    region,
    credentials: () => credentials.get(),
    sha256: Sha256,
    uriEscapePath: true,
  });
  return async (request: SignableRequest, now?: Date): Promise<Record<string, string>> => {
    const { url } = request;
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol: url.protocol,
        hostname: url.hostname,
        ...(url.port ? { port: Number(url.port) } : {}),
        path: url.pathname,
        query,
        headers: { ...request.headers, host: url.host },
        body: request.body,
      },
      now ? { signingDate: now } : {},
    );
    return signed.headers as Record<string, string>;
  };
}
