import { createHash, createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { RecordedRequest } from './wire.js';

/**
 * AWS's wire pieces, written here independently of the product (which uses AWS's own libraries), from the
 * published algorithms:
 * - Signature Version 4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html and
 *   https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html): canonical
 *   request (method, canonical URI — each path segment URI-encoded, and for every service but S3 encoded a
 *   second time —, canonical query, canonical headers, signed headers, hex SHA-256 of the payload), string to
 *   sign (`AWS4-HMAC-SHA256`, timestamp, scope, hash of the canonical request), signing key
 *   (HMAC chain `AWS4`+secret → date → region → service → `aws4_request`).
 * - The event stream encoding (https://docs.aws.amazon.com/transcribe/latest/dg/streaming-setting-up.html#streaming-event-stream):
 *   prelude = total length (uint32 BE) + headers length (uint32 BE), prelude CRC32, headers (name length
 *   uint8, name, value type 7 = string, value length uint16 BE, value), payload, message CRC32 over all the
 *   bytes before it.
 */

/** RFC 3986 encoding as SigV4 defines it: everything but A-Z a-z 0-9 - _ . ~ is %XX (upper case). */
export const uriEncode = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const sha256Hex = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();

export interface AwsKey {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export type SigV4Verdict =
  | { ok: true; key: AwsKey }
  | {
      ok: false;
      type: 'UnrecognizedClientException' | 'InvalidSignatureException' | 'IncompleteSignatureException';
      message: string;
    };

/** Recomputes a request's SigV4 signature from what arrived (path as received, body bytes) and compares. */
export function verifySigV4(
  req: Pick<RecordedRequest, 'method' | 'path' | 'query' | 'headers' | 'text'>,
  keys: readonly AwsKey[],
  expect: { region: string; service: string },
): SigV4Verdict {
  const auth = String(req.headers.authorization ?? '');
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (!match)
    return { ok: false, type: 'IncompleteSignatureException', message: 'Authorization header is not SigV4' };
  const [, accessKeyId, date, region, service, signedHeaders, signature] = match as unknown as string[];
  const key = keys.find((k) => k.accessKeyId === accessKeyId);
  if (!key)
    return {
      ok: false,
      type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    };
  if (region !== expect.region || service !== expect.service)
    return {
      ok: false,
      type: 'InvalidSignatureException',
      message: `Credential should be scoped to ${expect.region}/${expect.service}`,
    };
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  if (!amzDate.startsWith(date!))
    return {
      ok: false,
      type: 'IncompleteSignatureException',
      message: 'x-amz-date does not match the scope',
    };
  if (key.sessionToken && req.headers['x-amz-security-token'] !== key.sessionToken)
    return {
      ok: false,
      type: 'UnrecognizedClientException',
      message: 'The security token included in the request is invalid.',
    };
  const names = signedHeaders!.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date'))
    return { ok: false, type: 'IncompleteSignatureException', message: 'host and x-amz-date must be signed' };
  // Non-S3 services: each segment of the path as received (already encoded once) is encoded again; S3
  // signs the path encoded once, i.e. as received.
  const s3 = expect.service === 's3';
  const canonicalUri = s3
    ? req.path
    : req.path
        .split('/')
        .map((segment) => uriEncode(segment))
        .join('/');
  // S3 signs the payload hash the client declares in x-amz-content-sha256 (a hex SHA-256, or
  // UNSIGNED-PAYLOAD); the S3 fake checks the declared hash against the bytes itself.
  const payloadHash = s3
    ? String(req.headers['x-amz-content-sha256'] ?? '')
    : sha256Hex(Buffer.from(req.text, 'utf8'));
  if (s3 && (!payloadHash || !names.includes('x-amz-content-sha256')))
    return {
      ok: false,
      type: 'IncompleteSignatureException',
      message: 'x-amz-content-sha256 must be sent and signed',
    };
  const canonicalQuery = [...req.query]
    .map(([k, v]) => [uriEncode(k), uriEncode(v)])
    .sort(([a, x], [b, y]) => (a! < b! ? -1 : a! > b! ? 1 : x! < y! ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = names
    .map(
      (name) =>
        `${name}:${String(req.headers[name] ?? '')
          .trim()
          .replace(/\s+/g, ' ')}\n`,
    )
    .join('');
  const canonicalRequest = [
    req.method,
    canonicalUri,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const signingKey = hmac(
    hmac(hmac(hmac(`AWS4${key.secretAccessKey}`, date!), region!), service!),
    'aws4_request',
  );
  const expected = createHmac('sha256', signingKey).update(stringToSign).digest('hex');
  if (expected !== signature)
    return {
      ok: false,
      type: 'InvalidSignatureException',
      message: 'The request signature we calculated does not match the signature you provided.',
    };
  return { ok: true, key };
}

/** One event stream message with string headers. */
export function encodeEventStreamMessage(headers: Record<string, string>, payload: Buffer | string): Buffer {
  const headerBytes = Buffer.concat(
    Object.entries(headers).map(([name, value]) => {
      const n = Buffer.from(name, 'utf8');
      const v = Buffer.from(value, 'utf8');
      const out = Buffer.alloc(1 + n.length + 1 + 2 + v.length);
      out.writeUInt8(n.length, 0);
      n.copy(out, 1);
      out.writeUInt8(7, 1 + n.length); // string
      out.writeUInt16BE(v.length, 2 + n.length);
      v.copy(out, 4 + n.length);
      return out;
    }),
  );
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const total = 12 + headerBytes.length + body.length + 4;
  const prelude = Buffer.alloc(8);
  prelude.writeUInt32BE(total, 0);
  prelude.writeUInt32BE(headerBytes.length, 4);
  const preludeCrc = Buffer.alloc(4);
  preludeCrc.writeUInt32BE(crc32(prelude) >>> 0, 0);
  const withoutCrc = Buffer.concat([prelude, preludeCrc, headerBytes, body]);
  const messageCrc = Buffer.alloc(4);
  messageCrc.writeUInt32BE(crc32(withoutCrc) >>> 0, 0);
  return Buffer.concat([withoutCrc, messageCrc]);
}

/** A ConverseStream event frame: `:event-type`, JSON payload. */
export const eventFrame = (type: string, body: unknown) =>
  encodeEventStreamMessage(
    { ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' },
    JSON.stringify(body),
  );

/** An exception frame, as Bedrock sends throttlingException, modelStreamErrorException… mid-stream. */
export const exceptionFrame = (type: string, message: string) =>
  encodeEventStreamMessage(
    { ':exception-type': type, ':content-type': 'application/json', ':message-type': 'exception' },
    JSON.stringify({ message }),
  );
