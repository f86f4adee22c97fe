import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { FilesStorageConfig } from './config.js';

/**
 * Where file bytes live: one interface, two backends (local disk, S3-compatible object store). Keys are
 * made by Colloquy (`<user>/<file id>` and a suffix), never from a client's file name.
 */
/** What a backup needs to know of a stored object besides its bytes (src/ops/backup-objects.ts). */
export interface StoredObjectInfo {
  bytes: number;
  /** The media type it was stored with, when the storage keeps one (S3). */
  mediaType?: string | undefined;
  /** S3's ETag without its quotes: the MD5 of the bytes for a single-part, non-KMS upload. */
  etag?: string | undefined;
}

export interface FileStorage {
  readonly kind: 'disk' | 's3';
  /** Stores the local file `source` (a finished upload) under `key`; the source may be moved away. */
  putFile(key: string, source: string, bytes: number, mediaType: string): Promise<void>;
  putBuffer(key: string, data: Buffer, mediaType: string): Promise<void>;
  /** The bytes, streamed; undefined when the object is missing. */
  get(key: string): Promise<Readable | undefined>;
  /** The bytes with their size and media type, in one request; undefined when the object is missing. */
  open(key: string): Promise<(StoredObjectInfo & { body: Readable }) | undefined>;
  /** Size (and ETag) without the bytes; undefined when the object is missing. */
  head(key: string): Promise<StoredObjectInfo | undefined>;
  delete(key: string): Promise<void>;
  /** Proves the storage is reachable and writable (doctor): writes, reads back and deletes a probe. */
  check(): Promise<string>;
  /** A human description for logs and doctor: the directory or the bucket. */
  describe(): string;
  /** Lets go of connections (a CLI command ends; the server keeps its storage for its lifetime). */
  close?(): void;
}

/** The key of the model-ready image derived at upload (resized, EXIF stripped). */
export const modelImageKey = (key: string) => `${key}.model`;

const SAFE_KEY = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

export function assertSafeKey(key: string) {
  if (!SAFE_KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..'))
    throw new Error(`unsafe storage key ${JSON.stringify(key)}`);
}

export class DiskStorage implements FileStorage {
  readonly kind = 'disk';
  constructor(readonly dir: string) {}

  #path(key: string) {
    assertSafeKey(key);
    return path.join(this.dir, key);
  }

  async putFile(key: string, source: string) {
    const target = this.#path(key);
    await mkdir(path.dirname(target), { recursive: true });
    try {
      await rename(source, target);
    } catch (err) {
      // Another filesystem (a temp dir elsewhere): copy by streaming.
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      await pipeline(createReadStream(source), createWriteStream(target));
      await rm(source, { force: true });
    }
  }

  async putBuffer(key: string, data: Buffer) {
    const target = this.#path(key);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, data);
  }

  async get(key: string) {
    return (await this.open(key))?.body;
  }

  async open(key: string) {
    const info = await this.head(key);
    return info && { ...info, body: createReadStream(this.#path(key)) };
  }

  async head(key: string) {
    try {
      const found = await stat(this.#path(key));
      return found.isFile() ? { bytes: found.size } : undefined;
    } catch {
      return undefined;
    }
  }

  async delete(key: string) {
    await rm(this.#path(key), { force: true });
  }

  async check() {
    const key = `.doctor/probe-${process.pid}-${Date.now()}-${randomUUID()}`;
    await this.putBuffer(key, Buffer.from('probe'));
    const stream = await this.get(key);
    // The stream opens its file lazily: destroyed before that, its late open must not become an unhandled error.
    stream?.on('error', () => {});
    stream?.destroy();
    await this.delete(key);
    if (!stream) throw new Error('a probe written was not found again');
    return `writable directory ${this.dir}`;
  }

  describe() {
    return `disk ${this.dir}`;
  }
}

/** The storage of the configuration; S3 is loaded only when configured (the SDK is large). */
export async function createStorage(config: FilesStorageConfig): Promise<FileStorage> {
  if (config.kind === 'disk') return new DiskStorage(config.dir);
  const { S3Storage } = await import('./s3-storage.js');
  return new S3Storage(config);
}
