import { existsSync } from 'node:fs';
import { chmod, cp, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FilesStorageConfig } from '../features/files/config.js';

/**
 * Uploaded files beside a database backup (issue 24). On disk, FILES_DIR is copied to `<backup>.files/`
 * after the database: a file's bytes are stored before its row, so every row in the backup has its bytes
 * (a few newer, unreferenced files may come along). On S3 the bucket is not copied: its own versioning or
 * replication is the backup, and the summary says so.
 */
export interface FilesBackupSummary {
  kind: 'disk' | 's3';
  /** Where the copy is (disk), or the bucket left in place (S3). */
  location: string;
  files: number;
  bytes: number;
}

export const filesBackupDir = (backupFile: string) => `${backupFile}.files`;

/** Working files of the server, never backed up: uploads in progress and doctor probes. */
const SKIP = new Set(['.incoming', '.doctor']);

export async function backupFiles(
  storage: FilesStorageConfig,
  backupFile: string,
): Promise<FilesBackupSummary> {
  if (storage.kind === 's3')
    return { kind: 's3', location: `s3://${storage.bucket}/${storage.prefix}`, files: 0, bytes: 0 };
  const target = filesBackupDir(backupFile);
  await rm(target, { recursive: true, force: true });
  if (existsSync(storage.dir)) {
    await cp(storage.dir, target, {
      recursive: true,
      filter: (source) => !SKIP.has(path.relative(storage.dir, source).split(path.sep)[0] ?? ''),
    });
    // Users' documents: readable by the backup's owner only, like the database backup.
    await chmod(target, 0o700);
  }
  return { kind: 'disk', location: target, ...(await tally(target)) };
}

/**
 * Puts the files of a backup back into FILES_DIR (replacing what is there); a backup without a files copy
 * (S3, or taken before files existed) leaves FILES_DIR untouched. Undefined when there was nothing to restore.
 */
export async function restoreFiles(
  storage: FilesStorageConfig,
  backupFile: string,
): Promise<FilesBackupSummary | undefined> {
  const source = filesBackupDir(backupFile);
  if (storage.kind === 's3' || !existsSync(source)) return undefined;
  // Copied beside the directory first, then swapped in: a failed copy leaves the current files as they were.
  const staging = `${storage.dir}.restoring`;
  await rm(staging, { recursive: true, force: true });
  await cp(source, staging, { recursive: true });
  await rm(storage.dir, { recursive: true, force: true });
  await rename(staging, storage.dir);
  return { kind: 'disk', location: storage.dir, ...(await tally(storage.dir)) };
}

async function tally(dir: string): Promise<{ files: number; bytes: number }> {
  if (!existsSync(dir)) return { files: 0, bytes: 0 };
  let files = 0;
  let bytes = 0;
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await stat(path.join(entry.parentPath ?? (entry as { path?: string }).path ?? dir, entry.name)))
      .size;
  }
  return { files, bytes };
}
