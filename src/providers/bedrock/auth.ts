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
