import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * An exclusive lock between the Redis suites that run in parallel processes against one Redis (`url`):
 * CLIENT PAUSE in one would otherwise stall the other's tests. A lock left by a dead process is taken over.
 * Resolves to the release function.
 */
export async function lockRedisTests(url: string): Promise<() => void> {
  const id = createHash('sha256').update(url).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `colloquy-cache-redis-tests-${id}.lock`);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'pid'), String(process.pid));
      return () => rmSync(dir, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (lockIsStale(dir)) rmSync(dir, { recursive: true, force: true });
    else if (Date.now() > deadline) throw new Error(`timed out waiting for ${dir}`);
    else await sleep(50);
  }
}

function lockIsStale(dir: string): boolean {
  try {
    const pid = Number(readFileSync(path.join(dir, 'pid'), 'utf8'));
    if (!Number.isSafeInteger(pid) || pid <= 0)
      throw Object.assign(new Error('no pid yet'), { code: 'ENOENT' });
    process.kill(pid, 0);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM') return false;
    if (code === 'ENOENT') {
      try {
        return statSync(dir).mtimeMs < Date.now() - 10_000;
      } catch {
        return false;
      }
    }
    return true; // ESRCH: the holder is gone
  }
}
