/**
 * Preloaded by bench/idle-rss.ts: every 5 s (timer unref'd, a few hundred bytes allocated) one line on stderr,
 * `idle-rss-probe {json}`, with process.memoryUsage() and the committed size of each V8 heap space, so an idle
 * server's RSS can be split into V8 heap (young and old generations, code), external memory and the rest.
 */
import v8 from 'node:v8';

const MiB = 1024 * 1024;
const started = performance.now();
const round = (bytes) => Math.round((bytes / MiB) * 10) / 10;

function sample() {
  const m = process.memoryUsage();
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) spaces[s.space_name] = round(s.physical_space_size);
  const line = {
    t: Math.round((performance.now() - started) / 100) / 10,
    rss: round(m.rss),
    heapTotal: round(m.heapTotal),
    heapUsed: round(m.heapUsed),
    external: round(m.external),
    arrayBuffers: round(m.arrayBuffers),
    spaces,
  };
  process.stderr.write(`idle-rss-probe ${JSON.stringify(line)}\n`);
}

setInterval(sample, Number(process.env.IDLE_RSS_PROBE_MS ?? 5_000)).unref();
