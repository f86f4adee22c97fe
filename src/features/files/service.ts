import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, notFound } from '../../core/errors.js';
import { newId, nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { FilesConfig } from './config.js';
import { extractText } from './extract.js';
import { ImageRefused, prepareImage } from './images.js';
import { sanitizeFilename, sniff } from './sniff.js';
import { type FileStorage, modelImageKey } from './storage.js';
import type { FileMeta, FileStore } from './store.js';
import { zipBombReason } from './zip-guard.js';

export interface FilesServiceDeps {
  store: FileStore;
  storage: FileStorage;
  config: FilesConfig;
  logger: Logger;
}

// Kept importable from here; it lives in storage.ts so backups need not load sharp and the extractors.
export { modelImageKey };

const keyPart = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, '_');

/**
 * Uploads: the bytes stream to a temp file (never held whole in memory) with the size limit enforced as they
 * arrive; the content is then identified by its magic bytes, images decoded and derived for models,
 * documents converted to text in a limited worker; only then is the file stored and its row written.
 */
export class FilesService {
  constructor(private readonly deps: FilesServiceDeps) {}

  get storage() {
    return this.deps.storage;
  }

  #incomingDir() {
    // On the disk backend the temp file sits beside the files, so storing it is a rename.
    const { storage } = this.deps.config;
    return storage.kind === 'disk'
      ? path.join(storage.dir, '.incoming')
      : path.join(os.tmpdir(), 'colloquy-uploads');
  }

  async upload(userId: string, rawName: string, stream: Readable): Promise<FileMeta> {
    const { config, store, storage } = this.deps;
    const filename = sanitizeFilename(rawName);
    const remaining =
      config.quotaBytes > 0 ? config.quotaBytes - (await store.usedBytes(userId)) : Number.POSITIVE_INFINITY;
    if (remaining <= 0) {
      stream.resume();
      throw quotaExceeded(config.quotaBytes);
    }
    const id = newId('file');
    const dir = this.#incomingDir();
    await mkdir(dir, { recursive: true });
    const temp = path.join(dir, `${id}.part`);
    const hash = createHash('sha256');
    let bytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        if (bytes > config.maxUploadBytes) return done(tooLarge(config.maxUploadBytes));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(stream, counter, createWriteStream(temp));
      // @fastify/multipart ends a file at its size limit with `truncated` set (or an error, mapped below).
      if ((stream as Readable & { truncated?: boolean }).truncated) throw tooLarge(config.maxUploadBytes);
      if (bytes === 0) throw new AppError('unreadable_file', 'the file is empty', { param: 'file' });
      if (bytes > remaining) throw quotaExceeded(config.quotaBytes);
      const sniffed = await sniff(temp, filename, config.allowedExtensions);
      const key = `${keyPart(userId)}/${id}`;
      const row = {
        id,
        user_id: userId,
        filename,
        extension: sniffed.extension,
        media_type: sniffed.mediaType,
        kind: sniffed.kind,
        bytes,
        sha256: hash.digest('hex'),
        storage_key: key,
        width: null as number | null,
        height: null as number | null,
        text: null as string | null,
        text_chars: null as number | null,
        text_truncated: 0,
        conversation_id: null,
        created_at: nowIso(),
      };
      if (sniffed.kind === 'image') {
        const image = await prepareImage(temp, sniffed.extension).catch((err: unknown) => {
          if (err instanceof ImageRefused) throw unreadable(err.message);
          throw err;
        });
        row.width = image.sourceWidth;
        row.height = image.sourceHeight;
        await storage.putBuffer(modelImageKey(key), image.data, image.mediaType);
      } else {
        if (sniffed.extension === 'docx') {
          const bomb = await zipBombReason(temp);
          if (bomb) throw unreadable(bomb);
        }
        const outcome = await extractText({ file: temp, extension: sniffed.extension });
        if (!outcome.ok) throw unreadable(outcome.reason);
        row.text = outcome.text;
        row.text_chars = outcome.chars;
        row.text_truncated = outcome.truncated ? 1 : 0;
      }
      await storage.putFile(key, temp, bytes, sniffed.mediaType);
      try {
        await store.insert(row);
      } catch (err) {
        await this.#deleteObjects(key);
        throw err;
      }
      // Concurrent uploads (on any replica) each passed the check above: counted again with this row in, so
      // the user's files never stay past the quota (two racing uploads may both be refused; never both kept).
      if (config.quotaBytes > 0 && (await store.usedBytes(userId)) > config.quotaBytes) {
        await store.delete(id);
        await this.#deleteObjects(key);
        throw quotaExceeded(config.quotaBytes);
      }
      const { text: _text, ...meta } = row;
      return meta;
    } catch (err) {
      throw mapUploadError(err, config.maxUploadBytes);
    } finally {
      await rm(temp, { force: true });
    }
  }

  list(userId: string, limit: number, after?: string) {
    return this.deps.store.list(userId, limit, after);
  }

  async get(userId: string, id: string): Promise<FileMeta> {
    const row = await this.deps.store.findOwned(userId, id);
    if (!row) throw notFound('file');
    return row;
  }

  async content(userId: string, id: string): Promise<{ meta: FileMeta; body: Readable }> {
    const meta = await this.get(userId, id);
    const body = await this.deps.storage.get(meta.storage_key);
    if (!body) throw notFound('file content');
    return { meta, body };
  }

  async text(userId: string, id: string) {
    const meta = await this.get(userId, id);
    if (meta.kind !== 'document')
      throw new AppError('invalid_request', 'only documents have extracted text', { param: 'id' });
    return { meta, text: (await this.deps.store.text(id)) ?? '' };
  }

  async delete(userId: string, id: string) {
    const meta = await this.get(userId, id);
    await this.#remove(meta);
  }

  /** Deletes every file of a user (their account is deleted), bytes included; returns how many. */
  async deleteAllOf(userId: string): Promise<number> {
    let removed = 0;
    for (;;) {
      const rows = await this.deps.store.list(userId, 100);
      for (const row of rows) await this.#remove(row);
      removed += rows.length;
      if (rows.length < 100) return removed;
    }
  }

  async #remove(meta: FileMeta) {
    // The row goes first: a failure after it leaves an unreferenced object, never a row without bytes.
    await this.deps.store.delete(meta.id);
    await this.#deleteObjects(meta.storage_key).catch((err: unknown) =>
      this.deps.logger.warn({ err, fileId: meta.id }, 'a deleted file’s stored bytes could not be removed'),
    );
  }

  async #deleteObjects(key: string) {
    await this.deps.storage.delete(key);
    await this.deps.storage.delete(modelImageKey(key));
  }

  /** Deletes the files of conversations that are gone (deleted, or pruned by retention); returns how many. */
  async pruneDetached(maxBatches = 20): Promise<number> {
    let removed = 0;
    for (let batch = 0; batch < maxBatches; batch++) {
      const rows = await this.deps.store.detached(100);
      for (const row of rows) await this.#remove(row);
      removed += rows.length;
      if (rows.length < 100) break;
    }
    return removed;
  }
}

const mib = (bytes: number) => `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;

function tooLarge(max: number) {
  return new AppError('file_too_large', `the file is larger than ${mib(max)} (MAX_UPLOAD_SIZE)`, {
    param: 'file',
  });
}

function quotaExceeded(quota: number) {
  return new AppError(
    'file_quota_exceeded',
    `this upload would take your files past your quota of ${mib(quota)}; delete files to make room`,
    { param: 'file' },
  );
}

function unreadable(reason: string) {
  return new AppError('unreadable_file', `the file was refused: ${reason}`, { param: 'file' });
}

function mapUploadError(err: unknown, max: number): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string })?.code;
  if (code === 'FST_REQ_FILE_TOO_LARGE') return tooLarge(max);
  if (code === 'FST_PARTS_LIMIT' || code === 'FST_FILES_LIMIT' || code === 'FST_FIELDS_LIMIT')
    return new AppError('invalid_request', 'send one file in the multipart field `file`', { param: 'file' });
  // The client went away mid-upload, or sent a broken multipart body.
  if (
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    /multipart|boundary|Unexpected end/i.test(String((err as Error)?.message))
  )
    return new AppError('invalid_request', 'the multipart body ended early or is malformed', {
      param: 'file',
    });
  return err;
}
