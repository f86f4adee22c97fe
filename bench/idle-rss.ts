/**
 * Idle memory of a built Colloquy (issue 26: idle RSS < 100 MiB): `serve` in the bench's production
 * configuration (SQLite, migrated, LOG_LEVEL=warn, a fake upstream), started with bench/idle-rss-probe.mjs
 * preloaded; once /health/ready answers, RSS (/proc) and the probe's process.memoryUsage() and V8 heap
 * spaces every 5 s for --seconds (90). Several builds alternate, --rounds times each, so they share the
 * machine's load:
 *   node --import tsx bench/idle-rss.ts [--rounds 2] [--seconds 90] [dist/main.js /work/base-main/dist/main.js …]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  freePort,
  loadAverage,
  migrateWithApiKey,
  productionEnv,
  ROOT,
  rssMiB,
  spawnNode,
  startUpstream,
  UPSTREAM_KEY,
  waitHttp,
} from './lib.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '90' },
  },
});
const mains = (positionals.length ? positionals : ['dist/main.js']).map((m) => path.resolve(m));
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const probe = path.join(ROOT, 'bench/idle-rss-probe.mjs');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'colloquy-idle-rss-'));
const up = await startUpstream({ replyWords: 20, apiKey: UPSTREAM_KEY });

interface ProbeLine {
  t: number;
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, number>;
}

const env = (main: string, i: number) =>
  productionEnv(
    `sqlite:${path.join(tmp, `idle-${i}-${path.basename(path.dirname(path.dirname(main)))}.db`)}`,
  );

/** One build's idle readings: RSS 2 s after ready, then every 5 s; the probe's latest line with each. */
async function measure(main: string, i: number): Promise<void> {
  const base = env(main, i);
  await migrateWithApiKey(main, base);
  const port = await freePort();
  const started = performance.now();
  const proc = spawnNode(
    [main, 'serve'],
    {
      ...base,
      PORT: String(port),
      OPENAI_BASE_URL: up.baseUrl,
      RATE_LIMIT_ENABLED: 'false',
      RESPONSE_CACHE_TTL_SECONDS: '0',
    },
    ['--import', probe],
  );
  let latest: ProbeLine | undefined;
  let partial = '';
  proc.child.stderr?.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines)
      if (line.startsWith('idle-rss-probe ')) latest = JSON.parse(line.slice(15)) as ProbeLine;
  });
  try {
    await waitHttp(`http://127.0.0.1:${port}/health/ready`, 60_000, proc);
    const readyS = (performance.now() - started) / 1000;
    console.log(
      `\n${main} (round ${i + 1}; ready after ${readyS.toFixed(1)} s; load ${loadAverage().join(' ')})`,
    );
    console.log(
      '  t/s   RSS  heapTotal heapUsed external arrayBufs  new  old  code  large  (MiB; probe t/s)',
    );
    for (let t = 2; t <= seconds; t = t === 2 ? 5 : t + 5) {
      await sleep((t === 2 ? 2 : t === 5 ? 3 : 5) * 1000);
      const rss = rssMiB(proc.pid);
      const p = latest;
      const s = p?.spaces ?? {};
      const figures = p
        ? [p.heapTotal, p.heapUsed, p.external, p.arrayBuffers, s.new_space, s.old_space, s.code_space]
        : [];
      const cols = p
        ? `${[...figures, s.large_object_space].map((v) => (v ?? Number.NaN).toFixed(1).padStart(7)).join(' ')}   (${p.t})`
        : '  (no probe line yet)';
      console.log(`  ${String(t).padStart(3)} ${rss.toFixed(1).padStart(6)} ${cols}`);
    }
  } finally {
    await proc.stop();
  }
}

try {
  for (let r = 0; r < rounds; r++) for (const main of mains) await measure(main, r);
} finally {
  await up.stop();
  rmSync(tmp, { recursive: true, force: true });
}
