import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bearer, TEST_MASTER_KEY } from './app.js';
import { eventually } from './chat-stack.js';
import { freePort } from './net.js';

/** The built server: suites that spawn it skip when it is missing (`npm run build`). */
export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
export const built = () => existsSync(MAIN);

export interface DistServer {
  child: ChildProcess;
  url: string;
  /** The exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** Everything the process wrote, stdout and stderr. */
  output(): string;
}

/** Start-ups one at a time: a port picked by freePort() is only safe until its server binds it. */
let starting: Promise<unknown> = Promise.resolve();

/**
 * `node [nodeArgs] dist/main.js serve` on a free loopback port, in `cwd`, with the master key, JSON logs at
 * warn, no rate limits and no event-loop shedding (start-up lags on a busy test machine) unless `env` says
 * otherwise; resolves once /health answers. `env` must name the database (DATABASE_URL).
 */
export function spawnDistServer(options: {
  cwd: string;
  env: Record<string, string>;
  nodeArgs?: string[];
  /** How long /health may take to answer (default 60 s: a server starts in about a second on an idle machine, far slower on a busy one). */
  startTimeoutMs?: number;
}): Promise<DistServer> {
  const started = starting.then(() => spawnOne(options));
  starting = started.catch(() => undefined);
  return started;
}

async function spawnOne(options: {
  cwd: string;
  env: Record<string, string>;
  nodeArgs?: string[];
  startTimeoutMs?: number;
}): Promise<DistServer> {
  const port = await freePort();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), MAIN, 'serve'], {
    cwd: options.cwd,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'warn',
      COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY,
      RATE_LIMIT_ENABLED: 'false',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const append = (d: Buffer) => {
    output += d;
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await eventually(
      async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true,
      options.startTimeoutMs ?? 60_000,
      `the server is up (${output.slice(-500)})`,
    );
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw err;
  }
  return { child, url, exited, output: () => output };
}

/**
 * Opens a /v1 stream from the demo model (as the master key) and reads its first chunk; `rest` resolves to
 * the whole body once the stream ends.
 */
export async function openDemoStream(url: string, content: string) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
    body: JSON.stringify({ model: 'demo', stream: true, messages: [{ role: 'user', content }] }),
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const first = await reader.read();
  let text = decoder.decode(first.value, { stream: true });
  const rest = (async () => {
    while (true) {
      const { done, value } = await reader.read();
      if (done) return text;
      text += decoder.decode(value, { stream: true });
    }
  })();
  // Wrapped: returning the promise itself from an async function would wait for the whole stream.
  return { rest };
}
