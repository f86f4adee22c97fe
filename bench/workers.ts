/**
 * Throughput of `colloquy serve` with WORKERS=1 and WORKERS=2 (the built server, SQLite, the real Redis):
 * non-streaming demo-model completions (no upstream, no word delay) at saturation with autocannon, each arm
 * after a warm-up. Run: `npm run build && REDIS_URL=redis://127.0.0.1:6379 npx tsx bench/workers.ts`.
 * BENCH_DATABASE_URL=postgres://… uses that (scratch) database instead of SQLite.
 * Flags: --seconds=N (per arm, default 15), --connections=N (default 50), --route=completions|models.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '15' },
    connections: { type: 'string', default: '50' },
    // completions: each request records usage (a database write); models: a read-only authenticated route.
    route: { type: 'string', default: 'completions' },
  },
});
const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const KEY = 'bench-master-key-0123456789abcdefghijklmnop';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

async function arm(workers: number, port: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-bench-workers-'));
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? '',
      WORKERS: String(workers),
      PORT: String(port),
      HOST: '127.0.0.1',
      REDIS_URL: redisUrl,
      // BENCH_DATABASE_URL: a scratch PostgreSQL database instead of SQLite (migrated at start).
      DATABASE_URL: process.env.BENCH_DATABASE_URL ?? `sqlite:${path.join(dir, 'c.db')}`,
      COLLOQUY_ADMIN_KEY: KEY,
      DEMO_MODEL_ENABLED: 'true',
      DEMO_WORD_DELAY_MS: '0',
      RATE_LIMIT_ENABLED: 'false',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 120_000;
    // Up when `workers` distinct workers answered (or, with one, when it answers).
    const seen = new Set<string>();
    while (Date.now() < deadline && seen.size < workers) {
      const res = await fetch(`${url}/health`, { headers: { connection: 'close' } }).catch(() => undefined);
      if (res?.ok) {
        seen.add(res.headers.get('x-colloquy-worker') ?? 'single');
      } else await sleep(200);
    }
    if (seen.size < workers) throw new Error(`only ${seen.size} of ${workers} workers answered`);
    const request =
      flags.route === 'models'
        ? {
            url: `${url}/v1/models`,
            headers: { authorization: `Bearer ${KEY}` },
            connections: Number(flags.connections),
          }
        : {
            url: `${url}/v1/chat/completions`,
            method: 'POST' as const,
            headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
            body: JSON.stringify({ model: 'demo', messages: [{ role: 'user', content: 'hello there' }] }),
            connections: Number(flags.connections),
          };
    await autocannon({ ...request, duration: 5 }); // warm-up (JIT, pools)
    const result = await autocannon({ ...request, duration: Number(flags.seconds) });
    return {
      workers,
      rps: Math.round(result.requests.average),
      p99ms: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors,
    };
  } finally {
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(60_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

const base = 20_000 + Math.floor(Math.random() * 20_000);
const rows = [await arm(1, base), await arm(2, base + 1)];
console.table(rows);
const [one, two] = rows as [(typeof rows)[0], (typeof rows)[0]];
console.log(
  `cores: ${os.availableParallelism()}, load average: ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log(`2 workers / 1 worker: ${(two.rps / one.rps).toFixed(2)}×`);
