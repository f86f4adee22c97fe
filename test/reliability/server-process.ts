import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';
import { createTestDatabase, markSuiteRan, postgresAvailable } from '../helpers/databases.js';
import { connectInspector, type HeapProbe, inspectorUrl } from '../helpers/inspector.js';
import { freePort } from '../helpers/net.js';

/**
 * The built server (dist/main.js) as its own process, for the load suites: the client and the fake upstream
 * then do not share its event loop, and its memory can be read from /proc and over the inspector. Backed by
 * PostgreSQL and Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set (the production combination).
 */
export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
export const built = () => existsSync(MAIN);

export interface ServerProcess {
  url: string;
  pid: number;
  /** Resident memory in kB, from /proc. */
  rssKb(): number;
  /** Open sockets (client and upstream connections, the inspector's), from /proc. */
  sockets(): number;
  /** The heap after a full GC (the server runs with --inspect). */
  heap: HeapProbe;
  /** A gauge from /metrics, summed over its label sets. */
  gauge(name: string): Promise<number>;
  stderr(): string;
  close(): Promise<void>;
}

/** Start-ups one at a time: a port picked by freePort() is only safe until its server binds it. */
let starting: Promise<unknown> = Promise.resolve();

export function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const started = starting.then(() => start(env));
  starting = started.catch(() => undefined);
  return started;
}

async function start(env: Record<string, string>): Promise<ServerProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-load-'));
  const database = await createTestDatabase(postgresAvailable() ? 'postgres' : 'sqlite');
  const redis = process.env.TEST_REDIS_URL;
  if (redis) markSuiteRan('redis');
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ['--inspect=127.0.0.1:0', MAIN, 'serve'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'warn',
      COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
      DATABASE_URL: database.url,
      AUTO_MIGRATE: 'true',
      ...(redis ? { REDIS_URL: redis } : {}),
      RATE_LIMIT_ENABLED: 'false',
      RESPONSE_CACHE_TTL_SECONDS: '0',
      // A busy test machine lags: event-loop shedding would blur what the concurrency cap does.
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const url = `http://127.0.0.1:${port}`;
  const cleanUp = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(
      async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true,
      20_000,
      `the server is up (${stderr.slice(-500)})`,
    );
    const heap = await connectInspector(inspectorUrl(stderr)!);
    return {
      url,
      pid: child.pid!,
      rssKb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]),
      sockets: () =>
        readdirSync(`/proc/${child.pid}/fd`).filter((fd) => {
          try {
            return readlinkSync(`/proc/${child.pid}/fd/${fd}`).startsWith('socket:');
          } catch {
            return false; // closed meanwhile
          }
        }).length,
      heap,
      gauge: async (name) => {
        const text = await (await fetch(`${url}/metrics`)).text();
        const values = [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))];
        return values.reduce((sum, m) => sum + Number(m[1]), 0);
      },
      stderr: () => stderr,
      close: async () => {
        heap.close();
        await cleanUp();
      },
    };
  } catch (err) {
    await cleanUp();
    throw err;
  }
}

/**
 * A TCP proxy that cuts a connection once nothing has gone through it for `idleMs`, as a load balancer with
 * an idle timeout does (nginx proxy_read_timeout, an ALB's idle timeout).
 */
export async function startIdleTimeoutProxy(target: string, idleMs: number) {
  const { port: targetPort } = new URL(target);
  let cut = 0;
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(targetPort), '127.0.0.1');
    open.add(client);
    client.on('close', () => open.delete(client));
    client.pipe(upstream).pipe(client);
    // Every byte in either direction goes through the client socket, so its inactivity timer is the idle time.
    client.setTimeout(idleMs, () => {
      cut++;
      client.destroy();
      upstream.destroy();
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** Connections cut for being idle. */
    cut: () => cut,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
