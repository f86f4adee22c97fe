import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, markSuiteRan, postgresAvailable } from '../helpers/databases.js';
import { type DistServer, spawnDistServer } from '../helpers/dist-server.js';
import { connectInspector, type HeapProbe, inspectorUrl } from '../helpers/inspector.js';

/**
 * The built server (dist/main.js) as its own process, for the load suites: the client and the fake upstream
 * then do not share its event loop, and its memory can be read from /proc and over the inspector. Backed by
 * PostgreSQL and Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set (the production combination).
 */
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
  /** What the process wrote (its logs at warn, the inspector's banner, Node's warnings). */
  stderr(): string;
  close(): Promise<void>;
}

export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-load-'));
  const database = await createTestDatabase(postgresAvailable() ? 'postgres' : 'sqlite');
  const redis = process.env.TEST_REDIS_URL;
  if (redis) markSuiteRan('redis');
  const cleanUp = async () => {
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  let server: DistServer;
  try {
    server = await spawnDistServer({
      cwd: dir,
      nodeArgs: ['--inspect=127.0.0.1:0'],
      env: {
        DATABASE_URL: database.url,
        AUTO_MIGRATE: 'true',
        ...(redis ? { REDIS_URL: redis } : {}),
        RESPONSE_CACHE_TTL_SECONDS: '0',
        ...env,
      },
    });
  } catch (err) {
    await cleanUp();
    throw err;
  }
  const { child, url } = server;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await server.exited;
    await cleanUp();
  };
  try {
    const heap = await connectInspector(inspectorUrl(server.output())!);
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
      stderr: server.output,
      close: async () => {
        heap.close();
        await stop();
      },
    };
  } catch (err) {
    await stop();
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
