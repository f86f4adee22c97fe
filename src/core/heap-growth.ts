import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

export interface HeapGrowthPolicy {
  headroomBytes: number;
  minPercent: number;
  maxPercent: number;
}

const DEFAULT_POLICY: HeapGrowthPolicy = {
  headroomBytes: 64 * 2 ** 20,
  minPercent: 25,
  maxPercent: 100,
};

/**
 * How far V8 lets the old generation grow past its live size before the next mark-compact, as a percentage
 * of the live size: room for `headroomBytes` of growth, between `minPercent` and `maxPercent`, in steps of 5.
 *
 * A request's survivors fill the old generation; at 100 % a small heap (tens of MiB: request traffic) is
 * collected every ~20 s instead of every 3–4 s, which is what keeps p99 low at 1,000 requests/s. A large live
 * heap (thousands of open streams hold ~28 KiB each) does not need that room: at 100 % it would keep as much
 * again in garbage, ~130 MiB more RSS at 10,000 streams (bench scenario 4).
 */
export function growingPercentFor(
  liveBytes: number,
  { headroomBytes, minPercent, maxPercent }: HeapGrowthPolicy = DEFAULT_POLICY,
): number {
  const percent = liveBytes > 0 ? (100 * headroomBytes) / liveBytes : maxPercent;
  return Math.min(maxPercent, Math.max(minPercent, Math.round(percent / 5) * 5));
}

/**
 * Sets V8's heap growing percentage from the live heap after every mark-compact (V8 reads the flag each time
 * it sizes the next limit). Returns a function that stops watching.
 */
export function adaptHeapGrowth(
  policy: HeapGrowthPolicy = DEFAULT_POLICY,
  setFlags: (flags: string) => void = setFlagsFromString,
): () => void {
  let current = policy.maxPercent;
  setFlags(`--heap-growing-percent=${current}`);
  const observer = new PerformanceObserver((list) => {
    const major = list
      .getEntries()
      .some(
        (e) => (e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR,
      );
    if (!major) return;
    const next = growingPercentFor(getHeapStatistics().used_heap_size, policy);
    if (next === current) return;
    current = next;
    setFlags(`--heap-growing-percent=${current}`);
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
