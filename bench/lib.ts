import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A deterministic reply of `n` numbered words, so a client can check that every chunk arrived in order. */
export function benchReply(words: number): string {
  return Array.from({ length: words }, (_, i) => `w${i}`).join(' ');
}

// ---------------------------------------------------------------------------------------------------------
// Statistics

export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
  return { median, min: v[0] as number, max: v[v.length - 1] as number, n: v.length };
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den ? num / den : Number.NaN;
}

/**
 * RSS growth of a soak from its floors, MiB per minute: least squares over the troughs, each the lowest reading
 * within 15 s either side and at least `dropMiB` under a reading of the 15 s before it (an old-generation
 * collection gave memory back). V8's heap makes RSS a sawtooth (here ~40 MiB over ~100 s), and a slope over
 * the whole window mostly measures where in a tooth the window ends; a leak raises the floors. Undefined
 * with fewer than two troughs 60 s apart.
 */
export function floorGrowth(samples: { t: number; rss: number }[], dropMiB = 10): number | undefined {
  const near = (t: number, from: number, to: number) =>
    samples.filter((s) => s.t >= t + from && s.t <= t + to);
  const floors = samples.filter((s) => {
    const lowest = near(s.t, -15, 15).reduce((low, x) => (x.rss < low.rss ? x : low));
    return lowest === s && Math.max(...near(s.t, -15, 0).map((x) => x.rss)) - s.rss >= dropMiB;
  });
  const first = floors[0];
  const last = floors.at(-1);
  if (!first || !last || last.t - first.t < 60) return undefined;
  return slope(
    floors.map((s) => s.t / 60),
    floors.map((s) => s.rss),
  );
}

// ---------------------------------------------------------------------------------------------------------
// Processes

/** Resident set size of a process in MiB (VmRSS of /proc/<pid>/status), NaN when unavailable. */
export function rssMiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) a process has used so far, in seconds; NaN when unavailable. */
export function cpuSeconds(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  try {
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th, in clock ticks.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}
/** USER_HZ: 100 on every Linux architecture Node.js runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

export function loadAverage(): number[] {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  stderr: () => string;
  stop(): Promise<void>;
}

/**
 * Every process the bench spawns runs with V8's `--trace-gc-nvp`: each collection prints one line to stdout
 * whose `allocated=` is the bytes allocated on the V8 heap since the previous collection. Their sum over an
 * arm's round, divided by its requests, is the bytes a request allocates (to within one young generation,
 * ~16 MiB, over the round: ~1–2 KB a request over 10,000 requests). Four lines a second cost nothing measurable.
 */
const TRACE_GC = '--trace-gc-nvp';
const allocatedByPid = new Map<number, number>();

function countAllocations(child: ChildProcess): void {
  const pid = child.pid as number;
  allocatedByPid.set(pid, 0);
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const text = partial + d.toString('latin1');
    const lines = text.split('\n');
    partial = (lines.pop() ?? '').slice(-8_000);
    for (const line of lines) {
      const at = line.indexOf(' allocated=');
      if (at < 0 || !line.includes(' gc=')) continue;
      const bytes = Number.parseInt(line.slice(at + 11), 10);
      if (Number.isFinite(bytes)) allocatedByPid.set(pid, (allocatedByPid.get(pid) ?? 0) + bytes);
    }
  });
}

/** Bytes the process has allocated on its V8 heap so far, up to its last garbage collection. */
export function allocatedBytes(pid: number | undefined): number {
  return pid === undefined ? 0 : (allocatedByPid.get(pid) ?? 0);
}

/**
 * Spawns `node args…` with a raised open-file limit (10,000 streams need ~20,000 descriptors in a proxy).
 * `exec` keeps the pid, so /proc/<pid> is the server itself.
 */
export function spawnNode(args: string[], env: NodeJS.ProcessEnv, nodeFlags: string[] = []): Proc {
  const flagsWithGc = nodeFlags.includes(TRACE_GC) ? nodeFlags : [TRACE_GC, ...nodeFlags];
  const child = spawn(
    '/bin/sh',
    [
      '-c',
      'ulimit -n 65536 2>/dev/null || ulimit -n 20000 2>/dev/null; exec "$0" "$@"',
      process.execPath,
      ...flagsWithGc,
      ...args,
    ],
    { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-8_000);
  });
  // Read as a log collector would: a stdout nobody reads stalls a server's logging (and holds its memory).
  child.stdout?.resume();
  countAllocations(child);
  return {
    child,
    pid: child.pid as number,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export function run(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: ROOT, env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** The key the bench's fake upstream wants and every arm sends it (one per bench process). */
export const UPSTREAM_KEY = `sk-${randomBytes(12).toString('hex')}`;

/** Colloquy's production configuration as the bench runs it (README: "What runs"), on `databaseUrl`. */
export function productionEnv(
  databaseUrl: string,
  secrets = {
    SECRET_KEY: randomBytes(48).toString('base64'),
    COLLOQUY_ADMIN_KEY: randomBytes(32).toString('hex'),
    METRICS_TOKEN: randomBytes(16).toString('hex'),
  },
): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    COLLOQUY_ENV: 'production',
    NODE_ENV: 'production',
    ...secrets,
    DATABASE_URL: databaseUrl,
    OPENAI_API_KEY: UPSTREAM_KEY,
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
  };
}

/** A fresh database for `main`: migrated, a user made, and that user's API key returned. */
export async function migrateWithApiKey(main: string, env: NodeJS.ProcessEnv): Promise<string> {
  const email = 'bench@example.com';
  await run([main, 'migrate', 'up'], env);
  const password = randomBytes(18).toString('base64url');
  const created = await run(
    [main, 'users', 'create', '--email', email, '--password', password, '--json'],
    env,
  );
  if (!created.includes(`"${email}"`)) throw new Error(`users create printed no user: ${created}`);
  const out = await run([main, 'keys', 'create', '--user', email, '--name', 'bench', '--json'], env);
  return (JSON.parse(out.trim().split('\n').pop() as string) as { key: string }).key;
}

export interface UpstreamOptions {
  replyWords: number;
  wordsPerChunk?: number;
  firstTokenDelayMs?: number;
  chunkIntervalMs?: number;
  apiKey: string;
}

export interface Upstream extends Proc {
  url: string;
  baseUrl: string;
}

export async function startUpstream(o: UpstreamOptions): Promise<Upstream> {
  const proc = spawnNode(
    [
      'bench/fake-upstream.ts',
      '--reply-words',
      String(o.replyWords),
      '--words-per-chunk',
      String(o.wordsPerChunk ?? 1),
      '--first-token-delay-ms',
      String(o.firstTokenDelayMs ?? 0),
      '--chunk-interval-ms',
      String(o.chunkIntervalMs ?? 0),
      '--api-key',
      o.apiKey,
    ],
    { ...process.env, NODE_ENV: 'production' },
    ['--import', 'tsx'],
  );
  const info = (await readyLine(proc, 'fake upstream')) as { url: string; baseUrl: string };
  return { ...proc, url: info.url, baseUrl: info.baseUrl };
}

/** The first stdout line of a bench server (a JSON object saying where it listens). */
async function readyLine(proc: Proc, what: string): Promise<unknown> {
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${proc.stderr()}`)), 30_000);
    proc.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      // The first JSON line (lines of --trace-gc-nvp may come before it).
      const start = out.startsWith('{') ? 0 : out.indexOf('\n{') + 1;
      const nl = start > 0 || out.startsWith('{') ? out.indexOf('\n', start) : -1;
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(start, nl));
      }
    });
    proc.child.once('exit', (code) => reject(new Error(`${what} exited ${code}: ${proc.stderr()}`)));
  });
  proc.child.stdout?.resume();
  return JSON.parse(line);
}

export interface NodeProxy extends Proc {
  url: string;
}

/** bench/node-proxy.ts in front of `upstream`: the cheapest any Node.js proxy can be (see bench/README.md). */
export async function startNodeProxy(upstream: Upstream, apiKey: string): Promise<NodeProxy> {
  const proc = spawnNode(
    ['bench/node-proxy.ts', '--upstream', upstream.url, '--api-key', apiKey],
    { PATH: process.env.PATH, HOME: process.env.HOME, NODE_ENV: 'production' },
    ['--import', 'tsx'],
  );
  const info = (await readyLine(proc, 'node-proxy')) as { url: string };
  return { ...proc, url: info.url };
}

export async function waitHttp(url: string, timeoutMs = 30_000, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null))
      throw new Error(`process exited before ${url} answered:\n${proc.stderr()}`);
    if (Date.now() > deadline)
      throw new Error(`${url} not ready after ${timeoutMs} ms\n${proc?.stderr() ?? ''}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Targets (an endpoint under test: direct, colloquy, portkey)

export interface Target {
  name: string;
  /** origin, e.g. http://127.0.0.1:1234 */
  origin: string;
  /** the chat completions path on that origin */
  path: string;
  headers: Record<string, string>;
  pid?: number;
  /** The request body, when it is not chatBody() (the Messages API arm). */
  body?: string;
}

/** chatBody()'s request in Anthropic's Messages format (issue 20's Messages arm: the translation's cost). */
export function messagesBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    max_tokens: 256,
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
    ...extra,
  });
}

/** chatBody()'s request through the Responses API, unstored (the translation's cost, not a database write). */
export function responsesBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    input: 'Say hello to the benchmark.',
    store: false,
    ...extra,
  });
}

/** One short input to OpenAI's embeddings endpoint (the fake upstream answers it). */
export function embeddingsBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ model: 'text-embedding-3-small', input: 'Say hello to the benchmark.', ...extra });
}

export function chatBody(extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
    ...extra,
  });
}

// ---------------------------------------------------------------------------------------------------------
// Open-loop generator: sends at a fixed rate whatever the responses do, and measures each latency from the
// moment the request was due (so queueing in the client, the server or the network is counted).

export interface OpenLoopResult {
  rate: number;
  sent: number;
  ok: number;
  errors: number;
  /** ms, sorted */
  latencies: number[];
  achievedRps: number;
  firstError?: string;
}

export async function openLoop(
  target: Target,
  body: string,
  rate: number,
  durationS: number,
  connections = 256,
): Promise<OpenLoopResult> {
  const pool = new Pool(target.origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  const inflight = new Set<Promise<void>>();
  const headers = { 'content-type': 'application/json', ...target.headers };
  const total = Math.max(1, Math.round(rate * durationS));
  const start = performance.now();
  const fire = (due: number) => {
    const p = (async () => {
      try {
        const res = await pool.request({
          origin: target.origin,
          path: target.path,
          method: 'POST',
          headers,
          body,
        });
        await res.body.text();
        if (res.statusCode === 200) {
          ok++;
          latencies.push(performance.now() - due);
        } else {
          errors++;
          firstError ??= `HTTP ${res.statusCode}`;
        }
      } catch (err) {
        errors++;
        firstError ??= String(err);
      }
    })();
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  };
  while (sent < total) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) / 1000) * rate) + 1);
    while (sent < due) {
      fire(start + (sent / rate) * 1000);
      sent++;
    }
    await new Promise((r) => setImmediate(r));
    if (performance.now() - now < 0.5) await sleep(1);
  }
  const elapsed = (performance.now() - start) / 1000;
  await Promise.race([Promise.allSettled([...inflight]), sleep(30_000)]);
  await pool.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rate,
    sent,
    ok,
    errors,
    latencies,
    achievedRps: sent / elapsed,
    ...(firstError ? { firstError } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Streaming client: time to first content token, gaps between content chunks, order check.

export interface StreamSample {
  ttft: number;
  gaps: number[];
  inOrder: boolean;
}

/** Reads an OpenAI SSE stream; resolves with content chunk arrival times relative to `t0`. */
export async function readStream(
  pool: Pool,
  target: Target,
  body: string,
  expected: string,
  onFirst?: () => void,
  signal?: AbortSignal,
): Promise<StreamSample> {
  const t0 = performance.now();
  const res = await pool.request({
    origin: target.origin,
    path: target.path,
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...target.headers },
    body,
    ...(signal ? { signal } : {}),
  });
  if (res.statusCode !== 200)
    throw new Error(`HTTP ${res.statusCode}: ${(await res.body.text()).slice(0, 300)}`);
  const times: number[] = [];
  let text = '';
  let buf = '';
  let done = false;
  for await (const raw of res.body) {
    const now = performance.now();
    buf += (raw as Buffer).toString('utf8');
    let sep = buf.indexOf('\n\n');
    let contentHere = false;
    while (sep >= 0) {
      const event = buf.slice(0, sep);
      buf = buf.slice(sep + 2);
      sep = buf.indexOf('\n\n');
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        try {
          const parsed = JSON.parse(data) as { choices?: { delta?: { content?: string | null } }[] };
          const c = parsed.choices?.[0]?.delta?.content;
          if (c) {
            if (!times.length) onFirst?.();
            text += c;
            contentHere = true;
          }
        } catch {
          // not a chunk
        }
      }
    }
    if (contentHere) times.push(now - t0);
  }
  const gaps: number[] = [];
  for (let i = 1; i < times.length; i++) gaps.push((times[i] as number) - (times[i - 1] as number));
  return { ttft: times[0] ?? Number.NaN, gaps, inOrder: done && text.trim() === expected };
}
