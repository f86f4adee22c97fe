import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { markSuiteRan } from '../helpers/databases.js';
import { built, type DistServer, MAIN, openDemoStream, spawnDistServer } from '../helpers/dist-server.js';

/**
 * WORKERS=2: `colloquy serve` as a cluster (the built server, SQLite in WAL mode shared by both workers, the
 * real Redis). Each request goes on a new connection, so the primary hands them to the workers in turn.
 */
const redisUrl = process.env.TEST_REDIS_URL;

interface Answer {
  status: number;
  worker: string | undefined;
  body: string;
}

function request(url: string, pathname: string, options: { method?: string; body?: unknown } = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = http.request(
      `${url}${pathname}`,
      {
        method: options.method ?? 'GET',
        agent: false,
        timeout: 15_000,
        headers: {
          authorization: `Bearer ${TEST_MASTER_KEY}`,
          connection: 'close',
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, worker: res.headers['x-colloquy-worker'] as string, body }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Asks until `count` distinct workers have answered (bounded by tries and deadline). */
async function workersSeen(url: string, count: number, deadlineMs = 30_000): Promise<Set<string>> {
  const seen = new Set<string>();
  const deadline = Date.now() + deadlineMs;
  for (let i = 0; i < 400 && Date.now() < deadline && seen.size < count; i++) {
    const answer = await request(url, '/health').catch(() => undefined);
    if (answer?.status === 200 && answer.worker) seen.add(answer.worker);
    else await new Promise((r) => setTimeout(r, 100));
  }
  return seen;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('serve with WORKERS=2', { skip: !built() || !redisUrl }, () => {
  let dir: string;
  let server: DistServer;
  let pids: Set<string>;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-workers-'));
    server = await spawnDistServer({
      cwd: dir,
      env: {
        WORKERS: '2',
        REDIS_URL: redisUrl ?? '',
        DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`,
        DEMO_MODEL_ENABLED: 'true',
        // Streams that last a moment: one is in flight when SIGTERM arrives.
        DEMO_WORD_DELAY_MS: '30',
        LOG_LEVEL: 'info',
        // Two workers share 2 GiB: each gets three quarters of its half as V8 heap, from the supervisor.
        MEMORY_LIMIT: '2g',
      },
      // A primary and two workers starting on a loaded machine.
      startTimeoutMs: 90_000,
    });
    markSuiteRan('redis');
    pids = await workersSeen(server.url, 2);
  });

  after(async () => {
    if (server && server.child.exitCode === null) {
      server.child.kill('SIGKILL');
      await server.exited;
    }
    for (const pid of pids ?? []) if (alive(Number(pid))) process.kill(Number(pid), 'SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs two workers on one port, both writing the one SQLite database', async () => {
    assert.equal(
      pids.size,
      2,
      `two distinct worker pids answer: ${[...pids]}\n${server.output().slice(-2000)}`,
    );
    assert.ok(![...pids].includes(String(server.child.pid)), 'the primary serves no requests itself');
    // Twelve completions at once: each records usage; the workers write the same WAL database concurrently.
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        request(server.url, '/v1/chat/completions', {
          method: 'POST',
          body: { model: 'demo', messages: [{ role: 'user', content: `hello ${i}` }] },
        }),
      ),
    );
    assert.deepEqual(
      answers.map((a) => a.status),
      Array(12).fill(200),
      answers.map((a) => a.body).join('\n'),
    );
    assert.equal(new Set(answers.map((a) => a.worker)).size, 2, 'both workers answered completions');
  });

  it('MEMORY_LIMIT: the supervisor gives each worker its share of the limit as V8 heap', {
    skip: !existsSync('/proc/self/cmdline') && 'no /proc',
  }, () => {
    assert.match(server.output(), /memory limit 2048 MiB \(MEMORY_LIMIT\): each worker's heap is 768 MiB/);
    for (const pid of pids) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes('--max-old-space-size=768'), `worker ${pid} runs with ${argv.join(' ')}`);
    }
  });

  it('/metrics sums the counters of both workers and shows build info once', async () => {
    const answers: Answer[] = [];
    for (let i = 0; i < 10; i++) answers.push(await request(server.url, '/v1/models'));
    assert.ok(answers.every((a) => a.status === 200));
    assert.equal(new Set(answers.map((a) => a.worker)).size, 2, 'both workers answered /v1/models');
    const metrics = await request(server.url, '/metrics');
    assert.equal(metrics.status, 200, metrics.body);
    const count =
      /^colloquy_http_request_duration_seconds_count\{([^}]*route="\/v1\/models"[^}]*status_code="200"[^}]*)\} (\d+)/m.exec(
        metrics.body,
      );
    assert.equal(Number(count?.[2]), 10, 'the ten requests, whichever worker served them');
    assert.equal(metrics.body.match(/^colloquy_build_info\{/gm)?.length, 1, 'one build-info series');
    assert.match(metrics.body, /^colloquy_workers\{[^}]*\} 2$/m);
  });

  it('replaces a SIGKILLed worker; requests keep succeeding', async () => {
    const [victim, survivor] = [...pids];
    const results: Answer[] = [];
    let failures = 0;
    const deadline = Date.now() + 60_000;
    let killed = false;
    let replacement: string | undefined;
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      if (i === 5) {
        process.kill(Number(victim), 'SIGKILL');
        killed = true;
      }
      const answer = await request(server.url, '/health').catch(() => undefined);
      if (answer?.status !== 200) failures++;
      else results.push(answer);
      if (answer?.worker && answer.worker !== victim && answer.worker !== survivor)
        replacement = answer.worker;
      if (replacement && results.length >= 20) break;
    }
    assert.ok(killed);
    // Requests are sent one at a time: the killed worker held at most the one in flight.
    assert.ok(failures <= 1, `${failures} failed requests`);
    assert.ok(replacement, `a new worker answered after the kill\n${server.output().slice(-2000)}`);
    assert.match(server.output(), /worker died; starting another/);
    pids = new Set([survivor as string, replacement]);
  });

  it('SIGTERM drains every worker (a stream in flight finishes) and the primary exits 0', async () => {
    const stream = await openDemoStream(server.url, 'tell me a story');
    server.child.kill('SIGTERM');
    const code = await Promise.race([
      server.exited,
      new Promise<string>((r) => setTimeout(() => r('still running after 60 s'), 60_000).unref()),
    ]);
    assert.equal(code, 0, server.output().slice(-2000));
    assert.match(await stream.rest, /data: \[DONE\]/, 'the stream in flight at SIGTERM ended normally');
    for (const pid of pids) assert.equal(alive(Number(pid)), false, `worker ${pid} exited`);
    assert.match(server.output(), /colloquy stopped \(all workers exited\)/);
  });
});

describe('serve with WORKERS=2 and no REDIS_URL', { skip: !built() }, () => {
  it('refuses to start, naming WORKERS and REDIS_URL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-workers-'));
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        WORKERS: '2',
        PORT: '0',
        DATABASE_URL: `sqlite:${path.join(dir, 'c.db')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      const code = await Promise.race([
        new Promise<number | null>((r) => child.once('exit', (c) => r(c))),
        new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000).unref()),
      ]);
      assert.equal(code, 1);
      assert.match(stderr.trim(), /^colloquy: WORKERS=2 needs REDIS_URL: .*rate limits.*$/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('serve with WORKERS=2 whose workers cannot start', { skip: !built() || !redisUrl }, () => {
  it('gives up after repeated quick deaths: exit 1, saying so', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-workers-'));
    // The port is taken: every worker's listen fails (EADDRINUSE), the primary's migrations succeed.
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    const child = spawn(process.execPath, [MAIN, 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        WORKERS: '2',
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_FORMAT: 'json',
        REDIS_URL: redisUrl ?? '',
        DATABASE_URL: `sqlite:${path.join(dir, 'c.db')}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    try {
      const code = await Promise.race([
        new Promise<number | null>((r) => child.once('exit', (c) => r(c))),
        new Promise<string>((r) => setTimeout(() => r('still running after 150 s'), 150_000).unref()),
      ]);
      assert.equal(code, 1, output.slice(-2000));
      assert.match(output, /workers keep dying: 5 in a row/);
      assert.equal(output.match(/worker died; starting another/g)?.length, 4, 'restarted four times first');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      blocker.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
