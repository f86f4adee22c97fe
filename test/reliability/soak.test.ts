import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startFakeUpstream } from '../fake-upstream/server.js';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { sseData, UPSTREAM_KEY } from '../helpers/chat-stack.js';
import { built } from '../helpers/dist-server.js';
import { startServerProcess } from './server-process.js';

/**
 * A soak of the built server (SOAK_SECONDS, 20 s by default; set it higher for a long soak by hand) with
 * 1 % injected upstream faults: no 500, every stream ends with [DONE], and RSS, the heap after a full GC,
 * and the server's sockets stay flat; no MaxListenersExceededWarning. The heap is read over the inspector
 * protocol (the server is spawned with --inspect), so the product has no GC or heap endpoint of its own.
 */
const WORKERS = 4;
const MB = 1024 * 1024;
const HEAP_GROWTH_LIMIT = 5 * MB;

const faults = [
  { kind: 'status', status: 500 },
  { kind: 'reset-after', chunks: 1 },
  { kind: 'error-event', afterChunks: 1 },
  { kind: 'no-done' },
  { kind: 'malformed-chunk' },
] as const;

describe('soak with 1 % injected faults', { skip: !built() && 'run npm run build' }, () => {
  const seconds = Number(process.env.SOAK_SECONDS ?? 20);
  it(`${seconds} s: RSS, post-GC heap, sockets and streams stay flat`, {
    timeout: (seconds + 60) * 1_000,
  }, async () => {
    const fake = await startFakeUpstream({ apiKey: UPSTREAM_KEY });
    const server = await startServerProcess({ OPENAI_BASE_URL: fake.baseUrl, OPENAI_API_KEY: UPSTREAM_KEY });
    const { url } = server;
    let requests = 0;
    let injected = 0;
    let bad = 0;
    const statuses: Record<number, number> = {};
    const samples: { t: number; rss: number }[] = [];
    const started = Date.now();
    // Each phase's loops end at its deadline (and after at most 100,000 requests); a request has one too.
    const until = (deadline: number) => () => Date.now() < deadline && requests < 100_000;
    const worker = async (running: () => boolean) => {
      while (running()) {
        if (Math.random() < 0.01) {
          fake.queue(faults[injected % faults.length]!);
          injected++;
        }
        const stream = ++requests % 2 === 0;
        const res = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
          body: JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] }),
          signal: AbortSignal.timeout(30_000),
        });
        const body = await res.text();
        if (res.status >= 500 && ![502, 503, 504].includes(res.status)) bad++;
        if (res.status !== 200) statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status === 200 && stream && sseData(body).at(-1) !== '[DONE]') bad++;
      }
    };
    const sampler = async (running: () => boolean) => {
      while (running()) {
        samples.push({ t: Date.now() - started, rss: server.rssKb() });
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    /** Load until `deadline`, then a quiet moment for the heap and sockets to be read. */
    const phase = (deadline: number) =>
      Promise.all([
        ...Array.from({ length: WORKERS }, () => worker(until(deadline))),
        sampler(until(deadline)),
      ]);
    try {
      // The first quarter warms up (JIT, pools, caches); the early checkpoint follows it. Every fault is
      // met once in it: some paths load code and data on first use (the tokenizer that counts the tokens
      // of a reply cut short is ~15 MB), which would otherwise read as growth between the checkpoints.
      fake.queue(...faults);
      injected += faults.length;
      await phase(started + seconds * 250);
      const early = { heap: await server.heap.heapAfterGc(), sockets: server.sockets() };
      await phase(started + seconds * 1_000);
      const late = { heap: await server.heap.heapAfterGc(), sockets: server.sockets() };

      assert.equal(bad, 0, `a 500 or a stream without [DONE]: ${JSON.stringify(statuses)}`);
      // Compare the second quarter (after warm-up) with the last quarter of the run.
      const q = Math.max(1, Math.floor(samples.length / 4));
      const mean = (xs: { rss: number }[]) => xs.reduce((s, x) => s + x.rss, 0) / xs.length;
      const earlyRss = mean(samples.slice(q, 2 * q));
      const lateRss = mean(samples.slice(-q));
      const growth = late.heap - early.heap;
      console.log(
        `# soak: ${requests} requests, ${injected} faults, RSS ${Math.round(earlyRss / 1024)} → ` +
          `${Math.round(lateRss / 1024)} MB, post-GC heap ${(early.heap / MB).toFixed(1)} → ` +
          `${(late.heap / MB).toFixed(1)} MB (${growth >= 0 ? '+' : ''}${(growth / 1024).toFixed(0)} KB), ` +
          `server sockets ${early.sockets} → ${late.sockets}, upstream sockets ${fake.openSockets()}`,
      );
      assert.ok(lateRss < earlyRss * 2 + 10_240, `RSS grew from ${earlyRss} kB to ${lateRss} kB`);
      assert.ok(growth < HEAP_GROWTH_LIMIT, `post-GC heap grew by ${(growth / MB).toFixed(1)} MB`);
      // Idle keep-alive connections come and go (on a loaded machine each worker's client may open a second
      // before the first is back in its pool); a leak adds one per request (thousands here).
      assert.ok(late.sockets <= early.sockets + 2 * WORKERS, `sockets ${early.sockets} → ${late.sockets}`);
      assert.ok(fake.openSockets() <= 16, `upstream sockets: ${fake.openSockets()}`);
    } finally {
      const stderr = server.stderr();
      await server.close();
      await fake.close();
      assert.ok(!/MaxListenersExceededWarning/.test(stderr), stderr);
    }
  });
});
