import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Db } from '../db/database.js';
import { assertSafeKey, type FileStorage, modelImageKey } from '../features/files/storage.js';
import type { FileTables } from '../features/files/store.js';
import { BackupError } from './backup.js';

/**
 * Objects of an S3 bucket in a backup (issue 24). The objects the database references (each row's
 * `storage_key`, and an image's model-ready copy) are streamed from the bucket to `<backup>.files/<key>` —
 * the layout of a disk backup, so either storage can restore either backup — and listed in a manifest
 * (`<backup>.files-manifest.jsonl`: one JSON line per key with its size, SHA-256, MD5 and media type, or
 * `missing`). Objects no row references are not copied. A few objects move at once: memory stays at a
 * few stream buffers whatever the sizes, and the bucket is not flooded.
 */

export const CONCURRENCY = 4;

export const manifestFile = (backupFile: string) => `${backupFile}.files-manifest.jsonl`;

export type ManifestEntry =
  | { key: string; bytes: number; sha256: string; md5: string; mediaType?: string | undefined }
  | { key: string; missing: true };

interface ManifestHeader {
  format: 'colloquy-files';
  version: 1;
  source: string;
}

/**
 * Keys every row references, a page at a time (a large table is never read whole). Read from the live
 * database after its backup: rows added since bring their (already stored) bytes along; a row deleted since
 * is a file its owner deleted, whose bytes may be gone already — it downloads as 404 from a restore.
 */
export async function* referencedKeys(db: Db, pageSize = 500): AsyncGenerator<string> {
  const tables = await db.introspection.getTables();
  if (!tables.some((t) => t.name === 'files')) return;
  const files = db.withTables<FileTables>();
  let after = '';
  for (;;) {
    const rows = await files
      .selectFrom('files')
      .select(['id', 'storage_key', 'kind'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(pageSize)
      .execute();
    for (const row of rows) {
      yield row.storage_key;
      if (row.kind === 'image') yield modelImageKey(row.storage_key);
    }
    if (rows.length < pageSize) return;
    after = rows.at(-1)!.id;
  }
}

/** Runs `fn` on every item, at most `limit` at a time; the first failure stops the others taking more. */
export async function eachLimited<T>(
  items: AsyncIterable<T> | Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
) {
  const iterator =
    Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  let failed = false;
  const worker = async () => {
    while (!failed) {
      // Concurrent next() calls on one async generator are queued by the language: each item goes to one worker.
      const next = await iterator.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  // Every worker is finished before the caller cleans up: none is left writing into a removed directory.
  const outcomes = await Promise.allSettled(Array.from({ length: limit }, worker));
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failure) throw failure.reason;
}

/** A storage failure names the key and the storage (the SDK's own message alone says neither). */
async function storageStep<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(`${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** Counts and hashes what streams through it. */
function digester() {
  const sha256 = createHash('sha256');
  const md5 = createHash('md5');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      sha256.update(chunk);
      md5.update(chunk);
      done(null, chunk);
    },
  });
  return { stream, result: () => ({ bytes, sha256: sha256.digest('hex'), md5: md5.digest('hex') }) };
}

async function digest(source: Readable) {
  const d = digester();
  await pipeline(source, d.stream, async (chunks: AsyncIterable<unknown>) => {
    for await (const _ of chunks);
  });
  return d.result();
}

export interface ObjectsBackupResult {
  files: number;
  bytes: number;
  /** Referenced keys the storage did not have; `missingKeys` names the first few. */
  missing: number;
  missingKeys: string[];
}

export const MISSING_SHOWN = 20;

/** Copies `keys` from the storage into `dir` and writes `manifest`; both appear whole or not at all. */
export async function backupObjects(
  storage: FileStorage,
  keys: AsyncIterable<string>,
  dir: string,
  manifest: string,
): Promise<ObjectsBackupResult> {
  const suffix = `.partial-${randomBytes(4).toString('hex')}`;
  const staging = `${dir}${suffix}`;
  const out = createWriteStream(`${manifest}${suffix}`, { mode: 0o600 });
  const result: ObjectsBackupResult = { files: 0, bytes: 0, missing: 0, missingKeys: [] };
  const line = async (value: ManifestHeader | ManifestEntry) => {
    if (!out.write(`${JSON.stringify(value)}\n`)) await once(out, 'drain');
  };
  try {
    // Users' documents: readable by the backup's owner only, like the database backup.
    await mkdir(staging, { recursive: true, mode: 0o700 });
    await line({ format: 'colloquy-files', version: 1, source: storage.describe() });
    await eachLimited(keys, CONCURRENCY, async (key) => {
      assertSafeKey(key);
      const got = await storageStep(`${key} could not be copied from ${storage.describe()}`, async () => {
        const object = await storage.open(key);
        if (!object) return undefined;
        const target = path.join(staging, key);
        await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
        const d = digester();
        await pipeline(object.body, d.stream, createWriteStream(target, { mode: 0o600 }));
        return { ...d.result(), expected: object.bytes, mediaType: object.mediaType };
      });
      if (!got) {
        if (++result.missing <= MISSING_SHOWN) result.missingKeys.push(key);
        return line({ key, missing: true });
      }
      if (got.bytes !== got.expected)
        throw new BackupError(`${key}: ${storage.describe()} sent ${got.bytes} of ${got.expected} bytes`);
      result.files++;
      result.bytes += got.bytes;
      const { expected: _, ...entry } = got;
      await line({ key, ...entry });
    });
    out.end();
    await once(out, 'close');
    await rm(dir, { recursive: true, force: true });
    await rename(staging, dir);
    await chmod(dir, 0o700);
    await rename(`${manifest}${suffix}`, manifest);
    return result;
  } catch (err) {
    out.destroy();
    throw err;
  } finally {
    await rm(staging, { recursive: true, force: true });
    await rm(`${manifest}${suffix}`, { force: true });
  }
}

/** The manifest's entries, a line at a time; a line that is not an entry is a BackupError. */
export async function* readManifest(manifest: string): AsyncGenerator<ManifestEntry> {
  const lines = createInterface({ input: createReadStream(manifest), crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const text of lines) {
    n++;
    if (!text.trim()) continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new BackupError(`${manifest}: line ${n} is not JSON`);
    }
    const v = value as Record<string, unknown>;
    if (n === 1) {
      if (v.format !== 'colloquy-files' || v.version !== 1)
        throw new BackupError(`${manifest} is not a Colloquy files manifest (version 1)`);
      continue;
    }
    const ok =
      typeof v.key === 'string' &&
      (v.missing === true ||
        (typeof v.bytes === 'number' && typeof v.sha256 === 'string' && typeof v.md5 === 'string'));
    if (!ok) throw new BackupError(`${manifest}: line ${n} is not a manifest entry`);
    try {
      assertSafeKey(v.key as string);
    } catch {
      throw new BackupError(`${manifest}: line ${n} names an unsafe key`);
    }
    yield value as ManifestEntry;
  }
  if (n === 0) throw new BackupError(`${manifest} is empty`);
}

export interface ObjectProblem {
  key: string;
  problem: 'missing from the backup' | 'size differs' | 'SHA-256 differs';
}

/** Checks a file of the backup against its manifest entry: undefined when it holds the bytes listed. */
async function checkCopy(
  dir: string,
  entry: Extract<ManifestEntry, { sha256: string }>,
): Promise<ObjectProblem['problem'] | undefined> {
  const file = path.join(dir, entry.key);
  const found = await stat(file).catch(() => undefined);
  if (!found?.isFile()) return 'missing from the backup';
  if (found.size !== entry.bytes) return 'size differs';
  if ((await digest(createReadStream(file))).sha256 !== entry.sha256) return 'SHA-256 differs';
  return undefined;
}

export interface ObjectsVerifyResult {
  checked: number;
  /** Listed as missing from the bucket when the backup was taken (not a fault of the backup). */
  missingAtBackup: number;
  problems: ObjectProblem[];
}

/** Reads every file of the backup back and compares it with the manifest. */
export async function verifyObjects(dir: string, manifest: string): Promise<ObjectsVerifyResult> {
  const result: ObjectsVerifyResult = { checked: 0, missingAtBackup: 0, problems: [] };
  await eachLimited(readManifest(manifest), CONCURRENCY, async (entry) => {
    if ('missing' in entry) {
      result.missingAtBackup++;
      return;
    }
    result.checked++;
    const problem = await checkCopy(dir, entry);
    if (problem) result.problems.push({ key: entry.key, problem });
  });
  return result;
}

export interface ObjectsRestoreResult {
  uploaded: number;
  bytes: number;
  /** Already in the bucket with the same size and hash: left alone. */
  skipped: number;
  /** Listed as missing from the bucket when the backup was taken: nothing to restore. */
  missingAtBackup: number;
  /** Not uploaded: the backup's copy does not match its manifest. */
  problems: ObjectProblem[];
}

/**
 * Uploads the backup's objects to the storage (an S3 bucket: possibly another, empty one). An object
 * already there with the same size and ETag (or, when the ETag is not an MD5, the same SHA-256) is skipped,
 * so a restore interrupted half-way is simply run again. A copy that does not match the manifest is not
 * uploaded: it is reported, and the rest goes on.
 */
export async function restoreObjects(
  storage: FileStorage,
  dir: string,
  manifest: string,
): Promise<ObjectsRestoreResult> {
  // DiskStorage.putFile moves its source: a disk restore copies the directory instead (backup-files.ts).
  if (storage.kind !== 's3') throw new Error('restoreObjects uploads to S3 only');
  const result: ObjectsRestoreResult = {
    uploaded: 0,
    bytes: 0,
    skipped: 0,
    missingAtBackup: 0,
    problems: [],
  };
  await eachLimited(readManifest(manifest), CONCURRENCY, async (entry) => {
    if ('missing' in entry) {
      result.missingAtBackup++;
      return;
    }
    const problem = await checkCopy(dir, entry);
    if (problem) {
      result.problems.push({ key: entry.key, problem });
      return;
    }
    const uploaded = await storageStep(
      `${entry.key} could not be uploaded to ${storage.describe()}`,
      async () => {
        if (await alreadyThere(storage, entry)) return false;
        const mediaType = entry.mediaType ?? 'application/octet-stream';
        await storage.putFile(entry.key, path.join(dir, entry.key), entry.bytes, mediaType);
        return true;
      },
    );
    if (!uploaded) {
      result.skipped++;
      return;
    }
    result.uploaded++;
    result.bytes += entry.bytes;
  });
  return result;
}

async function alreadyThere(storage: FileStorage, entry: Extract<ManifestEntry, { sha256: string }>) {
  const remote = await storage.head(entry.key);
  if (!remote || remote.bytes !== entry.bytes) return false;
  if (remote.etag === entry.md5) return true;
  // An MD5-shaped ETag that differs: other bytes (or SSE-KMS, whose ETag is not the MD5: uploaded again,
  // harmlessly). A multipart ETag (`…-N`) or none says nothing: the bytes themselves decide.
  if (remote.etag && /^[0-9a-f]{32}$/.test(remote.etag)) return false;
  const body = await storage.get(entry.key);
  return body ? (await digest(body)).sha256 === entry.sha256 : false;
}

export const hasManifest = (backupFile: string) => existsSync(manifestFile(backupFile));
