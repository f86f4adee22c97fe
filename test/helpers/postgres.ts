import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitForPort } from './net.js';

const run = promisify(execFile);

/**
 * A throw-away PostgreSQL cluster of a test's own (trust auth, no fsync), for suites that restart or pause
 * the server: the machine's shared PostgreSQL on :5432 is never disturbed. initdb refuses to run as root,
 * so as root the cluster belongs to the `postgres` user and every pg_ctl runs through `runuser`.
 */
export interface PostgresServer {
  /** A DATABASE_URL for the cluster's `postgres` database over TCP. */
  url: string;
  port: number;
  /** `pg_ctl restart -m fast`: sessions are terminated, the server is back once this resolves. */
  /**
   * pg_ctl restart -m fast; with `whileDown`, stop -m fast, then `whileDown()` (an event to await while the
   * server is down, e.g. readiness saying so), then start.
   */
  restartFast(whileDown?: () => Promise<void>): Promise<void>;
  /** SIGSTOP (or SIGCONT) to the postmaster and every backend: a server that stops answering at all. */
  pause(): void;
  resume(): void;
  /** The backends serving client connections (each one's title reads "postgres: user db 127.0.0.1(port) …"). */
  connectionPids(): number[];
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin directory, or undefined when none is installed. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined;
}

export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-pg-'));
  if (asRoot) {
    const { uid, gid } = await postgresUser();
    chownSync(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  const pgTool = (tool: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', path.join(bin, tool), ...args])
      : run(path.join(bin, tool), args);
  const port = await freePort();
  await pgTool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  // Durability is not under test here, speed is: no fsync. The socket lives in the temp dir, not /run.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
  const log = path.join(dir, 'server.log');
  await pgTool('pg_ctl', ['-D', data, '-o', options, '-l', log, '-w', 'start']);
  await waitForPort(port, 10_000);

  /** The postmaster and its children (backends, checkpointer, walwriter…), from /proc. */
  const processes = (): number[] => {
    const postmaster = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const children = readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          // The parent pid is the 2nd field after the parenthesised command name.
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster;
        } catch {
          return false; // exited meanwhile
        }
      })
      .map(Number);
    return [postmaster, ...children];
  };
  const signalAll = (signal: NodeJS.Signals) => {
    for (const pid of processes()) {
      try {
        process.kill(pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // exited meanwhile
      }
    }
  };

  let stopped = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    restartFast: async (whileDown) => {
      // -l again, or the new postmaster would write to (and hold open) this call's stdout.
      if (!whileDown) {
        await pgTool('pg_ctl', ['-D', data, '-l', log, '-m', 'fast', '-w', 'restart']);
        return;
      }
      await pgTool('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      try {
        await whileDown();
      } finally {
        await pgTool('pg_ctl', ['-D', data, '-o', options, '-l', log, '-w', 'start']);
      }
    },
    connectionPids: () =>
      processes()
        .slice(1)
        .filter((pid) => {
          try {
            return /127\.0\.0\.1\(\d+\)/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
          } catch {
            return false; // exited meanwhile
          }
        }),
    pause: () => signalAll('SIGSTOP'),
    resume: () => signalAll('SIGCONT'),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      try {
        signalAll('SIGCONT'); // a paused server cannot shut down
        await pgTool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run('id', ['-u', 'postgres']);
  const { stdout: group } = await run('id', ['-g', 'postgres']);
  return { uid: Number(stdout.trim()), gid: Number(group.trim()) };
}
