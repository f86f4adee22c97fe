import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { describeDatabaseTarget } from '../config/database-url.js';
import type { Config } from '../config/load-config.js';
import { type Db, openDatabase } from '../db/database.js';
import {
  BackupError,
  type BackupSummary,
  type CountMismatch,
  countTargetRows,
  createBackup,
  dataRows,
  defaultBackupFile,
  type ProgressEvent,
  restoreBackup,
  verifyBackup,
} from '../ops/backup.js';
import { backupFiles, type FilesBackupSummary, restoreFiles, verifyFiles } from '../ops/backup-files.js';
import { manifestFile, type ObjectProblem } from '../ops/backup-objects.js';
import { CliError, cliConfig } from './context.js';

export function registerBackup(program: Command) {
  program
    .command('backup')
    .description(
      'back up the database (SQLite online backup, pg_dump, or mariadb-dump); safe while the server runs',
    )
    .option(
      '--out <file>',
      'where to write it (default ./backups/colloquy-<dialect>-<timestamp>.db|.dump|.sql)',
    )
    .option(
      '--verify',
      'restore into a scratch database and compare row counts per table; check copied S3 objects against their manifest',
    )
    .action(async (options: { out?: string; verify?: boolean }) => {
      const { database, files: filesConfig } = cliConfig();
      const file = path.resolve(options.out ?? defaultBackupFile(database.dialect));
      console.error(`database: ${describeDatabaseTarget(database)}`);
      const summary = await operatorErrors(() =>
        createBackup(database, file, { onProgress: progress('backing up') }),
      );
      // Uploaded files after the database: every row backed up has its bytes (see ops/backup-files.ts).
      const files = await operatorErrors(() =>
        withDb(database, (db) => backupFiles(filesConfig.storage, file, db)),
      );
      console.error(`files: ${describeFiles(files)}`);
      if (files.missing)
        console.error(
          `files: warning: ${files.missing} file${files.missing === 1 ? '' : 's'} the database references ${files.missing === 1 ? 'is' : 'are'} missing from the storage, so not in the backup (${files.missing === 1 ? 'its download answers' : 'their downloads answer'} 404): ${namedKeys(files.missingKeys, files.missing)}`,
        );
      if (options.verify) {
        const result = await operatorErrors(() => verifyBackup(database, file, summary.tables));
        if (!result.ok) {
          console.error(mismatchTable(result.mismatches));
          throw new CliError(
            `verification failed: the backup ${file} does not hold what the source held (see the table above)`,
          );
        }
        console.error(`verified: ${result.tables.length} tables restore with the same row counts`);
        const objects = await operatorErrors(() => verifyFiles(file));
        if (objects?.problems.length) {
          console.error(problemList(objects.problems));
          throw new CliError(
            `verification failed: ${objects.problems.length} of ${objects.checked} files in ${files.location} do not match ${manifestFile(file)} (see the list above)`,
          );
        }
        if (objects)
          console.error(`verified: ${objects.checked} files match their manifest (size and SHA-256)`);
      }
      console.log(`backup: ${summarize(summary)}`);
    });
}

export function registerRestore(program: Command) {
  program
    .command('restore')
    .description('replace the database with a backup (stop the server first)')
    .argument('<file>', 'a file written by `colloquy backup`')
    .option('--yes', 'do not ask before replacing a database that holds data')
    .action(async (file: string, options: { yes?: boolean }) => {
      const { database, files: filesConfig } = cliConfig();
      const source = path.resolve(file);
      if (!existsSync(source)) throw new CliError(`${source} does not exist`);
      const where = describeDatabaseTarget(database);
      console.error(`database: ${where}`);
      const current = await operatorErrors(() => countTargetRows(database));
      const rows = current ? dataRows(current) : undefined;
      if (rows !== 0 && !options.yes) {
        const what = rows === undefined ? 'an unreadable database' : `${rows} rows`;
        if (!process.stdin.isTTY)
          throw new CliError(`${where} is not empty (${what}); pass --yes to replace it with ${source}`);
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        const answer = await rl
          .question(`Replace ${where} (${what}) with ${source}? Type "yes" to continue: `)
          .finally(() => rl.close());
        if (answer.trim().toLowerCase() !== 'yes')
          throw new CliError('restore cancelled; nothing was changed');
      }
      const summary = await operatorErrors(() =>
        restoreBackup(database, source, { onProgress: progress('restoring') }),
      );
      const files = await operatorErrors(() =>
        restoreFiles(filesConfig.storage, source).catch((err: unknown) => {
          throw new BackupError(
            `the database is restored, but its files are not: ${(err as Error).message}`,
            { cause: err },
          );
        }),
      );
      console.error(
        `files: ${files ? describeRestored(files) : 'none in the backup; the file storage is unchanged'}`,
      );
      if (files?.problems.length) {
        console.error(problemList(files.problems));
        throw new CliError(
          `${files.problems.length} files of the backup do not match ${manifestFile(source)} and were not uploaded (see the list above); the database and the other files are restored`,
        );
      }
      console.log(`restored: ${summarize(summary)}`);
    });
}

function describeFiles(summary: FilesBackupSummary): string {
  const copied = `${summary.files} files (${formatBytes(summary.bytes)}) in ${summary.location}`;
  return summary.manifest ? `${copied}, listed in ${summary.manifest}` : copied;
}

function describeRestored(summary: FilesBackupSummary): string {
  if (summary.kind === 'disk')
    return `${summary.files} files (${formatBytes(summary.bytes)}) in ${summary.location}`;
  const absent = summary.missing ? `; ${summary.missing} were missing when the backup was taken` : '';
  return `${summary.files} uploaded (${formatBytes(summary.bytes)}) to ${summary.location}, ${summary.skipped} already there with the same bytes${absent}`;
}

function namedKeys(keys: string[], total: number) {
  return `${keys.join(', ')}${total > keys.length ? `, … (${total - keys.length} more)` : ''}`;
}

function problemList(problems: ObjectProblem[]): string {
  const shown = problems.slice(0, 20).map((p) => `  ${p.key}: ${p.problem}`);
  if (problems.length > shown.length) shown.push(`  … ${problems.length - shown.length} more`);
  return shown.join('\n');
}

/** The live database for one step (the keys the files table references). */
async function withDb<T>(target: Config['database'], fn: (db: Db) => Promise<T>): Promise<T> {
  const handle = openDatabase(target);
  try {
    return await fn(handle.db);
  } finally {
    await handle.close();
  }
}

/** BackupError is the operator's problem (bad file, database in use…): no stack trace. */
async function operatorErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message);
    throw err;
  }
}

/** A percentage on stderr, only on a terminal (logs and pipes stay clean). */
function progress(label: string): ((event: ProgressEvent) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let last = -1;
  return ({ done, total }) => {
    const percent = total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0;
    if (percent === last) return;
    last = percent;
    process.stderr.write(`\r${label}… ${String(percent).padStart(3)}%${percent === 100 ? '\n' : ''}`);
  };
}

export function summarize(summary: BackupSummary): string {
  return `${summary.file} (${formatBytes(summary.bytes)}, ${summary.tables.length} tables, ${summary.rows} rows)`;
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function mismatchTable(mismatches: CountMismatch[]): string {
  const show = (n: number | null) => (n === null ? 'missing' : String(n));
  const width = Math.max(5, ...mismatches.map((m) => m.table.length));
  const lines = [`${'table'.padEnd(width)}  ${'source'.padStart(8)}  ${'backup'.padStart(8)}`];
  for (const m of mismatches)
    lines.push(`${m.table.padEnd(width)}  ${show(m.expected).padStart(8)}  ${show(m.actual).padStart(8)}`);
  return lines.join('\n');
}
