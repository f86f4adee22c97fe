import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentials } from './auth.js';

// Apart from auth.ts: the SigV4 signer (@smithy/signature-v4, @aws-crypto) is loaded by a BedrockProvider when
// one is configured (see provider.ts), never by a server without Bedrock.

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
