/**
 * Scenario 3's streams, one at a time, through Colloquy (this build, and `--baseline DIR`'s) and node-proxy,
 * each with bench/stream-probe.mjs preloaded: the medians of each proxy's own stretches (request → upstream
 * call, first upstream chunk → its write to the client) and of the client's time to first token. Streams
 * one at a time so the probe can pair events without ids; arms interleaved round by round.
 *   node --import tsx bench/stream-path.ts [--streams 100] [--rounds 3] [--baseline DIR]
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import {
  benchReply,
  chatBody,
  freePort,
  migrateWithApiKey,
  type Proc,
  percentile,
  productionEnv,
  readStream,
  spawnNode,
  startUpstream,
  type Target,
  UPSTREAM_KEY,
  waitHttp,
} from './lib.js';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '3' },
    baseline: { type: 'string' },
  },
});
const tmp = mkdtempSync(path.join(os.tmpdir(), 'colloquy-stream-path-'));
const probe = path.resolve('bench/stream-probe.mjs');
const procs: Proc[] = [];
const up = await startUpstream({
  replyWords: 20,
  firstTokenDelayMs: 20,
  chunkIntervalMs: 10,
  apiKey: UPSTREAM_KEY,
});
procs.push(up);
const upstreamPort = new URL(up.url).port;

interface Arm {
  name: string;
  target: Target;
  proc: Proc;
  out: string;
}

async function colloquy(name: string, main: string): Promise<Arm> {
  const env = productionEnv(`sqlite:${path.join(tmp, `${name}.db`)}`);
  const key = await migrateWithApiKey(main, env);
  const port = await freePort();
  const out = path.join(tmp, `${name}.json`);
  const proc = spawnNode(
    [main, 'serve'],
    {
      ...env,
      PORT: String(port),
      OPENAI_BASE_URL: up.baseUrl,
      RATE_LIMIT_ENABLED: 'false',
      RESPONSE_CACHE_TTL_SECONDS: '0',
      STREAM_PROBE_UPSTREAM_PORT: upstreamPort,
      STREAM_PROBE_OUT: out,
    },
    ['--import', probe, ...(process.env.STREAM_PATH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [])],
  );
  procs.push(proc);
  const origin = `http://127.0.0.1:${port}`;
  await waitHttp(`${origin}/health/ready`, 30_000, proc);
  const target = { name, origin, path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}` } };
  return { name, target, proc, out };
}

async function nodeProxy(): Promise<Arm> {
  const out = path.join(tmp, 'node-proxy.json');
  const proc = spawnNode(
    ['bench/node-proxy.ts', '--upstream', up.url, '--api-key', UPSTREAM_KEY],
    {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'production',
      STREAM_PROBE_UPSTREAM_PORT: upstreamPort,
      STREAM_PROBE_OUT: out,
    },
    ['--import', 'tsx', '--import', probe],
  );
  procs.push(proc);
  const url = await new Promise<string>((resolve) => {
    let text = '';
    proc.child.stdout?.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /\{"url":"([^"]+)"/.exec(text);
      if (m) resolve(m[1] as string);
    });
  });
  return {
    name: 'node-proxy',
    target: { name: 'node-proxy', origin: url, path: '/v1/chat/completions', headers: {} },
    proc,
    out,
  };
}

try {
  const arms = [await colloquy('colloquy', 'dist/main.js')];
  if (values.baseline) arms.push(await colloquy('baseline', path.join(values.baseline, 'dist/main.js')));
  arms.push(await nodeProxy());
  const body = chatBody({ stream: true });
  const expected = benchReply(20);
  const figures = new Map<
    string,
    {
      ttft: number[];
      toUpstream: number[];
      toClient: number[];
      toClientSent: number[];
      marks: Record<string, number[]>;
    }
  >();
  for (const arm of arms)
    figures.set(arm.name, { ttft: [], toUpstream: [], toClient: [], toClientSent: [], marks: {} });
  for (let round = 0; round <= Number(values.rounds); round++) {
    for (const arm of arms) {
      const pool = new Pool(arm.target.origin, { connections: 1 });
      const ttft: number[] = [];
      for (let i = 0; i < Number(values.streams); i++) {
        const s = await readStream(pool, arm.target, body, expected);
        if (!s.inOrder) throw new Error(`${arm.name}: stream out of order`);
        ttft.push(s.ttft);
      }
      await pool.close();
      arm.proc.child.kill('SIGUSR2');
      await sleep(300);
      const probed = JSON.parse(readFileSync(arm.out, 'utf8')) as {
        toUpstream: number[];
        toClient: number[];
        toClientSent?: number[];
        marks: Record<string, number[]>;
      };
      if (round === 0) continue; // warm-up
      const f = figures.get(arm.name)!;
      f.ttft.push(...ttft.map((ms) => ms * 1000));
      f.toUpstream.push(...probed.toUpstream);
      f.toClient.push(...probed.toClient);
      f.toClientSent.push(...(probed.toClientSent ?? []));
      for (const [k, v] of Object.entries(probed.marks ?? {})) {
        f.marks[k] ??= [];
        f.marks[k].push(...v);
      }
    }
  }
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${percentile(s, 50).toFixed(0)} (p90 ${percentile(s, 90).toFixed(0)}, n ${s.length})`;
  };
  console.log(
    `load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; µs, median`,
  );
  for (const [name, f] of figures) {
    console.log(
      `${name.padEnd(11)} request→upstream ${med(f.toUpstream)}  chunk→client ${med(f.toClient)}  chunk→client sent ${med(f.toClientSent)}  client TTFT ${med(f.ttft)}`,
    );
    const marks = Object.entries(f.marks).map(
      ([k, v]) =>
        [
          k,
          percentile(
            [...v].sort((a, b) => a - b),
            50,
          ),
        ] as const,
    );
    for (const [k, v] of marks.sort((a, b) => a[0].localeCompare(b[0]) || a[1] - b[1]))
      console.log(`  ${k} ${v.toFixed(0)}`);
  }
} finally {
  for (const p of procs.reverse()) await p.stop();
  rmSync(tmp, { recursive: true, force: true });
}
