import type { Config } from '../config/load-config.js';
import { formatMiB, heapFlagMb } from '../config/memory-limit.js';

type Add = (id: string, severity: 'error' | 'warning' | 'info', message: string, fix: string) => void;

/** What `doctor` derived from the memory limit, one line (printed under its heading and in `--json`). */
export function memoryStatus(config: Config): { line: string; derived: Record<string, unknown> | undefined } {
  const m = config.memory;
  if (!m)
    return {
      line: 'memory limit: none found (no cgroup limit, MEMORY_LIMIT unset): no memory-based load shedding',
      derived: undefined,
    };
  const { maxHeapBytes, maxRssBytes } = config.http.overload;
  const per = m.workers > 1 ? ` per worker (${m.workers} workers)` : '';
  return {
    line:
      `memory limit ${formatMiB(m.limit.bytes)} (${m.limit.source}): 503 past ` +
      `${maxHeapBytes ? `${formatMiB(maxHeapBytes)} heap or ` : ''}${formatMiB(maxRssBytes)} resident${per}; ` +
      `recommended --max-old-space-size=${m.heapMb}`,
    derived: {
      limitBytes: m.limit.bytes,
      source: m.limit.source,
      workers: m.workers,
      maxOldSpaceSizeMb: m.heapMb,
      overloadMaxHeapBytes: maxHeapBytes,
      overloadMaxRssBytes: maxRssBytes,
    },
  };
}

/**
 * A heap allowed to grow past the memory limit is killed by the kernel (OOM, every stream lost) before V8
 * reports anything: flagged when NODE_OPTIONS sets `--max-old-space-size` above a process's share of it.
 */
export function checkMemory(config: Config, nodeOptions: string | undefined, add: Add) {
  const m = config.memory;
  if (!m) return;
  const flag = heapFlagMb(nodeOptions);
  const shareMb = Math.floor(m.limit.bytes / m.workers / 1024 / 1024);
  if (flag !== undefined && flag >= shareMb)
    add(
      'memory.heap_over_limit',
      'warning',
      `NODE_OPTIONS sets --max-old-space-size=${flag} (MiB), but each of ${m.workers} process(es) has ` +
        `${formatMiB(shareMb * 1024 * 1024)} of the ${formatMiB(m.limit.bytes)} memory limit (${m.limit.source}): ` +
        'the kernel kills the process before its heap is full',
      `set NODE_OPTIONS=--max-old-space-size=${m.heapMb} (or unset it: with WORKERS > 1 the supervisor sizes each worker)`,
    );
}
