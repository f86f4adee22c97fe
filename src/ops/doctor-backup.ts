import { statSync } from 'node:fs';
import path from 'node:path';
import type { DatabaseTarget } from '../config/database-url.js';

type Add = (id: string, severity: 'error' | 'warning' | 'info', message: string, fix: string) => void;

/** An executable of that name on PATH (`colloquy backup` finds its tools the same way). */
export function onPath(name: string, searchPath = process.env.PATH ?? ''): boolean {
  return searchPath.split(path.delimiter).some((dir) => {
    try {
      return Boolean(dir) && statSync(path.join(dir, name)).isFile();
    } catch {
      return false;
    }
  });
}

/**
 * MySQL / MariaDB backups run the server's client tools (src/ops/backup-mysql.ts): without them on PATH,
 * `colloquy backup` — and the deploy script's backup before each migration — would fail on the day it runs.
 */
export function checkBackupTools(
  target: DatabaseTarget | undefined,
  add: Add,
  has: (name: string) => boolean = onPath,
) {
  if (target?.dialect !== 'mysql') return;
  const missing = [
    ['mariadb-dump', 'mysqldump'],
    ['mariadb', 'mysql'],
  ]
    .filter((names) => !names.some(has))
    .map((names) => names.join(' or '));
  if (missing.length)
    add(
      'backup.mysql_tools_missing',
      'warning',
      `${missing.join(' and ')} not found on PATH: \`colloquy backup\` and \`restore\` need them on MySQL / MariaDB`,
      'install the MariaDB or MySQL client tools (Debian: apt-get install mariadb-client)',
    );
}
