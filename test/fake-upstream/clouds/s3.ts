import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AwsKey, verifySigV4 } from './aws-wire.js';

/**
 * An in-process S3-compatible object store for tests, written from the Amazon S3 API reference
 * (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html, API_GetObject.html,
 * API_HeadObject.html, API_DeleteObject.html; errors: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
 * Path-style addressing (`/{bucket}/{key}`). Every request's SigV4 signature is recomputed from what
 * arrived (aws-wire.ts) and a declared x-amz-content-sha256 is checked against the bytes: a request the
 * real S3 would refuse is refused here too (403 SignatureDoesNotMatch / XAmzContentSHA256Mismatch).
 */
export interface FakeS3 {
  url: string;
  bucket: string;
  objects: Map<string, { data: Buffer; contentType: string }>;
  /** Every request: method, key, and whether its signature verified. */
  log: { method: string; key: string; verified: boolean }[];
  /** Requests refused for their signature (should stay 0 for Colloquy's own). */
  refused(): number;
  close(): Promise<void>;
}

const xmlError = (res: http.ServerResponse, status: number, code: string, message: string) => {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`,
  );
};

/** A single-part upload's ETag is the MD5 of its bytes, quoted (API_Object.html, "ETag"). */
const etagOf = (data: Buffer) => `"${createHash('md5').update(data).digest('hex')}"`;

export async function startFakeS3(options: {
  bucket: string;
  region: string;
  keys: AwsKey[];
}): Promise<FakeS3> {
  const objects: FakeS3['objects'] = new Map();
  const log: FakeS3['log'] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://fake');
    const verdict = verifySigV4(
      {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        text: '',
      },
      options.keys,
      { region: options.region, service: 's3' },
    );
    const [, bucket, ...rest] = url.pathname.split('/');
    const key = decodeURIComponent(rest.join('/'));
    log.push({ method: req.method ?? '', key, verified: verdict.ok });
    if (!verdict.ok) return xmlError(res, 403, 'SignatureDoesNotMatch', verdict.message);
    const declared = String(req.headers['x-amz-content-sha256']);
    if (declared !== 'UNSIGNED-PAYLOAD' && declared !== createHash('sha256').update(data).digest('hex'))
      return xmlError(
        res,
        400,
        'XAmzContentSHA256Mismatch',
        'The provided x-amz-content-sha256 header does not match what was computed.',
      );
    if (bucket !== options.bucket)
      return xmlError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist');
    const object = objects.get(key);
    switch (req.method) {
      case 'PUT':
        objects.set(key, { data, contentType: String(req.headers['content-type'] ?? 'binary/octet-stream') });
        res.writeHead(200, { etag: etagOf(data) });
        return res.end();
      case 'GET':
      case 'HEAD':
        if (!object) {
          if (req.method === 'HEAD') {
            res.writeHead(404);
            return res.end();
          }
          return xmlError(res, 404, 'NoSuchKey', 'The specified key does not exist.');
        }
        // GetObject and HeadObject return the ETag the PutObject did (API_HeadObject.html, "ETag").
        res.writeHead(200, {
          'content-type': object.contentType,
          'content-length': String(object.data.length),
          etag: etagOf(object.data),
        });
        return res.end(req.method === 'GET' ? object.data : undefined);
      case 'DELETE':
        objects.delete(key);
        res.writeHead(204);
        return res.end();
      default:
        return xmlError(
          res,
          405,
          'MethodNotAllowed',
          'The specified method is not allowed against this resource.',
        );
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bucket: options.bucket,
    objects,
    log,
    refused: () => log.filter((l) => !l.verified).length,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
