import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from './helpers/net.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** A port nobody listens on right now: bind port 0, read the number, let it go. */

interface Served {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `colloquy serve` with no configuration but PORT and HOST, nothing inherited from this process. */
function serve(cwd: string, port: number): Served {
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    cwd,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, output: () => output, exited };
}

// Liveness bounds, not speed: a start on a 2-core machine loaded by other work took over 10 s (fresh-clone run).
const STARTS_WITHIN_MS = 60_000;
const STOPS_WITHIN_MS = 30_000;

async function waitForHealth(url: string, served: Served, timeoutMs: number): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (served.child.exitCode !== null) {
      throw new Error(`the server exited with ${served.child.exitCode}:\n${served.output()}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return res;
      last = `status ${res.status}`;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no 200 from ${url} within ${timeoutMs} ms (last: ${String(last)}):\n${served.output()}`);
}

async function exitWithin(served: Served, ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still running after ${ms} ms:\n${served.output()}`)), ms);
  });
  try {
    return await Promise.race([served.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('colloquy serve with no configuration', () => {
  let dir: string;
  const running: Served[] = [];

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-serve-'));
  });
  after(() => {
    for (const s of running)
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts, creates ./data/colloquy.db, answers /health, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const served = serve(dir, port);
    running.push(served);
    const base = `http://127.0.0.1:${port}`;

    const health = await waitForHealth(`${base}/health`, served, STARTS_WITHIN_MS);
    const body = (await health.json()) as { status: string; environment: string };
    assert.equal(body.status, 'ok');
    assert.equal(body.environment, 'development');

    // The SQLite file lives under ./data relative to the working directory.
    assert.ok(existsSync(path.join(dir, 'data', 'colloquy.db')), served.output());

    // Development applies migrations at start, so the server is ready too.
    const ready = await fetch(`${base}/health/ready`);
    assert.equal(ready.status, 200, await ready.clone().text());
    assert.equal(((await ready.json()) as { status: string }).status, 'ready');

    served.child.kill('SIGTERM');
    const { code, signal } = await exitWithin(served, STOPS_WITHIN_MS);
    assert.equal(signal, null, served.output());
    assert.equal(code, 0, served.output());
    assert.match(served.output(), /SECRET_KEY is not set/);
    await assert.rejects(fetch(`${base}/health`), 'nothing listens after shutdown');
  });

  it('starts again on the same data directory and exits 0 on SIGINT', async () => {
    const port = await freePort();
    const served = serve(dir, port);
    running.push(served);
    const base = `http://127.0.0.1:${port}`;

    await waitForHealth(`${base}/health/ready`, served, STARTS_WITHIN_MS);
    served.child.kill('SIGINT');
    const { code, signal } = await exitWithin(served, STOPS_WITHIN_MS);
    assert.equal(signal, null, served.output());
    assert.equal(code, 0, served.output());
    assert.doesNotMatch(served.output(), /applied \d+ migration/, 'nothing left to migrate');
  });
});
