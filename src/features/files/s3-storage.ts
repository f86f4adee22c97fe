import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { FilesStorageConfig } from './config.js';
import { assertSafeKey, type FileStorage, type StoredObjectInfo } from './storage.js';

type S3Config = Extract<FilesStorageConfig, { kind: 's3' }>;

const info = (out: { ContentLength?: number; ContentType?: string; ETag?: string }): StoredObjectInfo => ({
  bytes: out.ContentLength ?? 0,
  mediaType: out.ContentType,
  etag: out.ETag?.replace(/^(W\/)?"|"$/g, ''),
});

/**
 * Files in an S3-compatible bucket, with AWS's own client: credentials come from the AWS chain (environment,
 * shared config, web identity, instance or container role). Uploads are sent with their length known (the
 * finished temp file), so the body streams from disk and is never held in memory.
 */
export class S3Storage implements FileStorage {
  readonly kind = 's3';
  readonly client: S3Client;

  constructor(readonly config: S3Config) {
    this.client = new S3Client({
      region: config.region,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      forcePathStyle: config.forcePathStyle,
      // Checksums only where S3 requires them: several S3-compatible stores refuse the newer trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  #key(key: string) {
    assertSafeKey(key);
    return `${this.config.prefix}${key}`;
  }

  async putFile(key: string, source: string, bytes: number, mediaType: string) {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.config.bucket,
        Key: this.#key(key),
        Body: createReadStream(source),
        ContentLength: bytes,
        ContentType: mediaType,
      }),
    );
  }

  async putBuffer(key: string, data: Buffer, mediaType: string) {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.config.bucket,
        Key: this.#key(key),
        Body: data,
        ContentType: mediaType,
      }),
    );
  }

  async get(key: string) {
    return (await this.open(key))?.body;
  }

  async open(key: string) {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: this.#key(key) }),
      );
      if (!(out.Body instanceof Readable)) return undefined;
      return { body: out.Body, ...info(out) };
    } catch (err) {
      if (err instanceof NoSuchKey || err instanceof NotFound) return undefined;
      throw err;
    }
  }

  async head(key: string) {
    try {
      return info(
        await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.#key(key) })),
      );
    } catch (err) {
      if (err instanceof NoSuchKey || err instanceof NotFound) return undefined;
      throw err;
    }
  }

  async delete(key: string) {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.#key(key) }));
  }

  async check() {
    const key = `.doctor/probe-${process.pid}-${Date.now()}`;
    await this.putBuffer(key, Buffer.from('probe'), 'text/plain');
    await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.#key(key) }));
    await this.delete(key);
    return `bucket ${this.config.bucket} writable`;
  }

  close() {
    this.client.destroy();
  }

  describe() {
    return `s3 bucket ${this.config.bucket}${this.config.endpoint ? ` at ${this.config.endpoint}` : ''}`;
  }
}
