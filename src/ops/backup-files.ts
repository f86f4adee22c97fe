import { existsSync } from 'node:fs';
import { chmod, cp, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../db/database.js';
import type { FilesStorageConfig } from '../features/files/config.js';
import { createStorage } from '../features/files/storage.js';
import { BackupError } from './backup.js';
import {
  backupObjects,
  hasManifest,
  MISSING_SHOWN,
  manifestFile,
  type ObjectProblem,
  type ObjectsVerifyResult,
  referencedKeys,
  restoreObjects,
  verifyObjects,
} from './backup-objects.js';

/**
 * Uploaded files beside a database backup (issue 24), copied after the database: a file's bytes are stored
 * before its row, so every row in the backup has its bytes (a few newer, unreferenced files may come along).
 * On disk, FILES_DIR is copied to `<backup>.files/`. On S3, the objects the database references are
 * downloaded to the same layout with a manifest (src/ops/backup-objects.ts). Either way a key the database
 * references but the storage lacks is counted and named, and the backup goes on: its database is sound, and
 * taking it again would not bring the bytes back.
 */
export interface FilesBackupSummary {
  kind: 'disk' | 's3';
  /** Where the copy is (backup), or the storage written to (restore). */
  location: string;
  /** Files copied (backup) or written (restore), and their bytes. */
  files: number;
  bytes: number;
  /** Backup: referenced keys the storage lacked (the first MISSING_SHOWN named). Restore: listed so. */
  missing: number;
  missingKeys: string[];
  /** Restore to S3: objects already in the bucket with the same bytes, left alone. */
  skipped: number;
  /** Restore to S3: copies in the backup that do not match the manifest, not uploaded. */
  problems: ObjectProblem[];
  /** Backup of S3: the manifest listing every key with its size and hashes. */
  manifest?: string;
}

export const filesBackupDir = (backupFile: string) => `${backupFile}.files`;

/** Working files of the server, never backed up: uploads in progress and doctor probes. */
const SKIP = new Set(['.incoming', '.doctor']);

const none = () => ({ missing: 0, missingKeys: [] as string[], skipped: 0, problems: [] as ObjectProblem[] });

/** `db` is the live database, read for the keys its rows reference (needed for S3). */
export async function backupFiles(
  storage: FilesStorageConfig,
  backupFile: string,
  db?: Db,
): Promise<FilesBackupSummary> {
  const target = filesBackupDir(backupFile);
  if (storage.kind === 's3') {
    if (!db) throw new Error('an S3 backup reads the keys from the database');
    const s3 = await createStorage(storage);
    try {
      const result = await backupObjects(s3, referencedKeys(db), target, manifestFile(backupFile));
      return { ...none(), kind: 's3', location: target, manifest: manifestFile(backupFile), ...result };
    } finally {
      s3.close?.();
    }
  }
  await rm(target, { recursive: true, force: true });
  await rm(manifestFile(backupFile), { force: true });
  if (existsSync(storage.dir)) {
    await cp(storage.dir, target, {
      recursive: true,
      filter: (source) => !SKIP.has(path.relative(storage.dir, source).split(path.sep)[0] ?? ''),
    });
    // Users' documents: readable by the backup's owner only, like the database backup.
    await chmod(target, 0o700);
  }
  const summary: FilesBackupSummary = { ...none(), kind: 'disk', location: target, files: 0, bytes: 0 };
  if (db)
    for await (const key of referencedKeys(db)) {
      if (existsSync(path.join(target, key))) continue;
      if (++summary.missing <= MISSING_SHOWN) summary.missingKeys.push(key);
    }
  return { ...summary, ...(await tally(target)) };
}

/** Checks the files of a backup against its manifest (S3); undefined when it has none (a disk copy). */
export async function verifyFiles(backupFile: string): Promise<ObjectsVerifyResult | undefined> {
  if (!hasManifest(backupFile)) return undefined;
  return verifyObjects(filesBackupDir(backupFile), manifestFile(backupFile));
}

/**
 * Puts the files of a backup back: into FILES_DIR (replacing what is there), or uploaded to the bucket
 * (adding to what is there). A backup without files (taken before files existed) leaves the storage
 * untouched. Undefined when there was nothing to restore.
 */
export async function restoreFiles(
  storage: FilesStorageConfig,
  backupFile: string,
): Promise<FilesBackupSummary | undefined> {
  const source = filesBackupDir(backupFile);
  if (!existsSync(source)) return undefined;
  if (storage.kind === 's3') {
    if (!hasManifest(backupFile))
      throw new BackupError(
        `${source} was copied from disk storage and has no manifest: restore it with FILES_DIR (S3_BUCKET unset), or copy it to the bucket yourself`,
      );
    const s3 = await createStorage(storage);
    try {
      const result = await restoreObjects(s3, source, manifestFile(backupFile));
      return {
        kind: 's3',
        location: s3.describe(),
        files: result.uploaded,
        bytes: result.bytes,
        missing: result.missingAtBackup,
        missingKeys: [],
        skipped: result.skipped,
        problems: result.problems,
      };
    } finally {
      s3.close?.();
    }
  }
  // Copied beside the directory first, then swapped in: a failed copy leaves the current files as they were.
  const staging = `${storage.dir}.restoring`;
  await rm(staging, { recursive: true, force: true });
  await cp(source, staging, { recursive: true });
  await rm(storage.dir, { recursive: true, force: true });
  await rename(staging, storage.dir);
  return { ...none(), kind: 'disk', location: storage.dir, ...(await tally(storage.dir)) };
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
