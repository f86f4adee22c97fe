import assert from 'node:assert/strict';
import { setMaxListeners } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FakeUpstream, startFakeUpstream } from '../fake-upstream/server.js';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { eventually, UPSTREAM_KEY } from '../helpers/chat-stack.js';
import { built } from '../helpers/dist-server.js';
import {
  assertStreamOrRefusal,
  figures,
  percentile,
  type StreamOutcome,
  startWorkers,
  streamCompletion,
  type Workers,
} from './load-client.js';
import { type ServerProcess, startIdleTimeoutProxy, startServerProcess } from './server-process.js';

/**
 * Load on the built server in front of a slowly streaming fake upstream (issue #8, "Load and soak"): a
 * baseline, a ramp past MAX_CONCURRENT_REQUESTS, a spike of 300 streams in one second, and a few long
 * streams (LONG_STREAM_SECONDS, 45 by default; set it to minutes by hand) behind a proxy with an idle timeout.
 */
const CAP = 40;
const REPLY = Array.from({ length: 12 }, (_, i) => `w${String(i + 1).padStart(2, '0')}`).join(' ');
const DEADLINE_MS = 20_000;
/** No set of load clients runs longer than this, whatever its test does (a ramp takes ~10 s). */
const WORKERS_DEADLINE_MS = 90_000;
type WorkerOptions = Parameters<typeof startWorkers>[0];
const LONG_STREAM_SECONDS = Number(process.env.LONG_STREAM_SECONDS ?? 45);

const upstream = (options: Parameters<typeof startFakeUpstream>[0]) =>
  startFakeUpstream({ apiKey: UPSTREAM_KEY, reply: REPLY, ...options });
const upstreamEnv = (fake: FakeUpstream) => ({ OPENAI_BASE_URL: fake.baseUrl, OPENAI_API_KEY: UPSTREAM_KEY });

describe('load', { skip: !built() && 'run npm run build', concurrency: 2 }, () => {
  // Its scenarios one after another (a suite inherits its parent's concurrency otherwise).
  describe(`MAX_CONCURRENT_REQUESTS=${CAP}`, { concurrency: 1 }, () => {
    let fake: FakeUpstream;
    let server: ServerProcess;
    before(async () => {
      // 12 chunks 40 ms apart: each stream holds its slot for about half a second.
      fake = await upstream({ chunkIntervalMs: 40 });
      server = await startServerProcess({ ...upstreamEnv(fake), MAX_CONCURRENT_REQUESTS: String(CAP) });
    });
    after(async () => {
      await server?.close();
      await fake?.close();
    });

    const workers = (count: number, running: (index: number) => boolean, more: Partial<WorkerOptions> = {}) =>
      startWorkers({
        url: server.url,
        count,
        running,
        requestDeadlineMs: DEADLINE_MS,
        deadlineMs: WORKERS_DEADLINE_MS,
        ...more,
      });

    it('(a) baseline, 20 concurrent streams: every one 200, complete and in order', async () => {
      const rounds = Array.from({ length: 20 }, () => 0);
      const baseline = workers(20, (i) => rounds[i]!++ < 3);
      try {
        await baseline.done;
      } finally {
        await baseline.stop();
      }
      const { outcomes } = baseline;
      figures('load (a) baseline', outcomes);
      assert.equal(outcomes.length, 60);
      for (const o of outcomes) {
        assert.equal(o.status, 200, `${o.status} ${o.error}`);
        assertStreamOrRefusal(o, REPLY);
      }
    });

    // That a refusal is not queued behind a slot (it comes back while every slot is still held) is proven by
    // events in test/features/concurrency-cap.test.ts; here, under churn, the refusals' shape and the cap.
    it(`(b) ramp 10 → 120 concurrent streams: past ${CAP} a 503 + Retry-After, never more than ${CAP} in flight, then all 200`, async () => {
      const outcomes: StreamOutcome[] = [];
      let target = 10;
      const batches: Workers[] = [];
      // Whatever happens below (an assertion failing, the server gone), the clients and the sampler stop in
      // the `finally`: a failing load test must fail, not spin on connection errors until killed.
      const stop = new AbortController();
      setMaxListeners(20, stop.signal); // one per set of clients (12) and the sampler's
      let inFlightMax = 0;
      const sampler = (async () => {
        for (let i = 0; i < 2_000 && !stop.signal.aborted; i++) {
          const inFlight = await server.gauge('colloquy_http_requests_in_flight').catch(() => 0);
          inFlightMax = Math.max(inFlightMax, inFlight);
          await sleep(100, undefined, { signal: stop.signal }).catch(() => {});
        }
      })();
      try {
        // Up by 10 clients every 300 ms, three seconds at 120, then back down to 10.
        for (let started = 0; started < 120; started += 10) {
          const offset = started;
          target = started + 10;
          batches.push(workers(10, (i) => offset + i < target, { outcomes, signal: stop.signal }));
          await sleep(300);
        }
        await sleep(3_000);
        target = 10;
        await Promise.all(batches.slice(1).map((b) => b.done));
        const rampedDownAt = performance.now();
        const ramp = figures('load (b) ramp to 120', outcomes);
        console.log(`# load (b): requests in flight at most ${inFlightMax} (cap ${CAP})`);
        for (const o of outcomes) assertStreamOrRefusal(o, REPLY);
        assert.ok((ramp.statuses[503] ?? 0) > 0, 'the ramp went past the cap: some requests were refused');
        assert.ok((ramp.statuses[200] ?? 0) >= CAP, 'the server kept serving up to the cap');
        assert.ok(inFlightMax <= CAP, `${inFlightMax} requests in flight past a cap of ${CAP}`);

        // Ramped down: the ten clients left are all served again.
        await sleep(500);
        target = 0;
        await batches[0]!.done;
        const rounds = Array.from({ length: 10 }, () => 0);
        const after = workers(10, (i) => rounds[i]!++ < 3, { signal: stop.signal });
        await after.done;
        figures('load (b) after the ramp', after.outcomes);
        assert.equal(after.outcomes.length, 30);
        for (const o of [...outcomes.filter((o) => o.startedAt > rampedDownAt), ...after.outcomes]) {
          assert.equal(o.status, 200, `after the ramp: ${o.status} ${o.error}`);
          assertStreamOrRefusal(o, REPLY);
        }
        await eventually(
          async () => (await server.gauge('colloquy_http_requests_in_flight')) === 0,
          5_000,
          'every slot released once the clients are gone',
        );
      } finally {
        stop.abort();
        await Promise.all(batches.map((b) => b.stop()));
        await sampler;
      }
    });
  });

  describe('spike and long streams (default cap)', { concurrency: 2 }, () => {
    it('(c) 0 → 300 streams within one second: each completes or is refused, nothing hangs', async () => {
      const fake = await upstream({ chunkIntervalMs: 50 });
      const server = await startServerProcess(upstreamEnv(fake));
      try {
        const started = performance.now();
        const outcomes = await Promise.all(
          Array.from({ length: 300 }, async (_, i) => {
            await sleep(Math.floor(i * (1_000 / 300)));
            return streamCompletion(server.url, DEADLINE_MS);
          }),
        );
        const wall = Math.round(performance.now() - started);
        const { statuses } = figures('load (c) spike of 300', outcomes);
        const heads = outcomes.filter((o) => o.status === 200).map((o) => o.headMs);
        console.log(
          `# load (c): all answered within ${wall} ms; response head p50/p99 ` +
            `${Math.round(percentile(heads, 50))}/${Math.round(percentile(heads, 99))} ms`,
        );
        for (const o of outcomes) assertStreamOrRefusal(o, REPLY);
        assert.equal(outcomes.length, 300);
        assert.ok((statuses[200] ?? 0) > 0);
        await eventually(
          async () =>
            (await server.gauge('colloquy_active_streams')) === 0 &&
            (await server.gauge('colloquy_http_requests_in_flight')) === 0,
          5_000,
          'no stream and no request left open after the spike',
        );
      } finally {
        await server.close();
        await fake.close();
      }
    });

    it(`(d) long streams, ${LONG_STREAM_SECONDS} s, behind an 18 s idle timeout`, {
      timeout: (LONG_STREAM_SECONDS + 60) * 1_000,
    }, async () => {
      // The first token comes after 22 s, longer than the proxy's idle timeout: only the stream's
      // keep-alive comments (every 15 s) keep the connection open. Then one chunk a second.
      const firstTokenMs = 22_000;
      const words = Math.max(5, LONG_STREAM_SECONDS - 24);
      const reply = Array.from({ length: words }, (_, i) => `c${i + 1}`).join(' ');
      const fake = await upstream({ reply, firstTokenDelayMs: firstTokenMs, chunkIntervalMs: 1_000 });
      const server = await startServerProcess({
        ...upstreamEnv(fake),
        UPSTREAM_TOTAL_TIMEOUT_MS: String((LONG_STREAM_SECONDS + 120) * 1_000),
      });
      const proxy = await startIdleTimeoutProxy(server.url, 18_000);
      let stopSampling = () => {};
      try {
        const email = 'long-streams@example.com';
        const password = 'a-long-enough-password';
        const json = { 'content-type': 'application/json' };
        const created = await fetch(`${server.url}/api/users`, {
          method: 'POST',
          headers: { ...bearer(TEST_MASTER_KEY), ...json },
          body: JSON.stringify({ email, password, role: 'user' }),
        });
        assert.equal(created.status, 201, await created.text());
        const login = await fetch(`${server.url}/api/auth/login`, {
          method: 'POST',
          headers: json,
          body: JSON.stringify({ email, password }),
        });
        const token = ((await login.json()) as { access_token: string }).access_token;
        const auth = { ...bearer(token), ...json };

        const stream = async (n: number) => {
          // Only the stream goes through the proxy: an idle pooled connection would be cut too, harmlessly.
          const conversation = await fetch(`${server.url}/api/conversations`, {
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ model: 'gpt-4o-mini' }),
          });
          const { id } = (await conversation.json()) as { id: string };
          const startedAt = performance.now();
          const res = await fetch(`${proxy.url}/api/conversations/${id}/messages`, {
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ content: `long stream ${n}`, stream: true }),
            signal: AbortSignal.timeout((LONG_STREAM_SECONDS + 30) * 1_000),
          });
          const body = await res.text().catch((err: Error) => `cut: ${err.cause ?? err}`);
          return { status: res.status, body, ms: performance.now() - startedAt };
        };

        const samples: number[] = [];
        // One sample a second while the streams run; bounded, and stopped in the `finally` too.
        const sampling = new AbortController();
        stopSampling = () => sampling.abort();
        const sampler = (async () => {
          for (let i = 0; i < LONG_STREAM_SECONDS + 120 && !sampling.signal.aborted; i++) {
            samples.push(server.rssKb());
            await sleep(1_000, undefined, { signal: sampling.signal }).catch(() => {});
          }
        })();
        const streams = Array.from({ length: 5 }, (_, n) => stream(n));
        // Once the first tokens flow (the first quarter of a long run, or at once), and near the end.
        await sleep(firstTokenMs + 2_000);
        const early = await server.heap.heapAfterGc();
        await sleep(Math.max(0, (words - 4) * 1_000));
        const late = await server.heap.heapAfterGc();
        const results = await Promise.all(streams);
        sampling.abort();
        await sampler;

        const growthKb = Math.round((late - early) / 1024);
        const quarter = Math.max(1, Math.floor(samples.length / 4));
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        const earlyRss = mean(samples.slice(quarter, 2 * quarter));
        const lateRss = mean(samples.slice(-quarter));
        console.log(
          `# load (d): ${results.length} streams of ${words} chunks over ${Math.round(mean(results.map((r) => r.ms)) / 1000)} s, ` +
            `statuses ${results.map((r) => r.status).join(',')}, keep-alive comments per stream ` +
            `${results.map((r) => (r.body.match(/^: keepalive$/gm) ?? []).length).join(',')}, ` +
            `connections cut by the proxy ${proxy.cut()}, RSS ${Math.round(earlyRss / 1024)} → ` +
            `${Math.round(lateRss / 1024)} MB, post-GC heap ${(early / 1048576).toFixed(1)} → ` +
            `${(late / 1048576).toFixed(1)} MB (${growthKb >= 0 ? '+' : ''}${growthKb} KB)`,
        );
        for (const r of results) {
          assert.equal(r.status, 200);
          const events = [...r.body.matchAll(/^event: (\S+)\ndata: (.*)$/gm)];
          const deltas = events
            .filter((e) => e[1] === 'delta')
            .map((e) => JSON.parse(e[2]!).content as string);
          assert.equal(deltas.join(''), reply, `every chunk, in order: ${r.body.slice(-300)}`);
          assert.equal(events.at(-1)?.[1], 'done', `the stream ended with done: ${r.body.slice(-300)}`);
          assert.ok(/^: keepalive$/m.test(r.body), 'keep-alive comments while the first token was awaited');
          assert.ok(r.ms >= firstTokenMs + (words - 1) * 1_000, `a stream of ${Math.round(r.ms)} ms`);
        }
        assert.equal(proxy.cut(), 0, 'no stream went idle long enough for the proxy to cut it');
        assert.ok(late - early < 5 * 1048576, `the post-GC heap grew by ${growthKb} KB`);
        assert.ok(lateRss < earlyRss + 20 * 1024, `RSS grew from ${earlyRss} kB to ${lateRss} kB`);
      } finally {
        stopSampling();
        await proxy.close();
        await server.close();
        await fake.close();
      }
    });
  });
});
