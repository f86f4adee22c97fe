import { readFileSync } from 'node:fs';

/**
 * The memory a container may use, and what Colloquy derives from it. A container past its limit is killed by
 * the kernel (OOM) with every stream it holds; shedding load a little before that, and a V8 heap sized below
 * it, turn that kill into 503s a load balancer moves elsewhere.
 */

const MiB = 1024 * 1024;
const UNITS: Record<string, number> = { '': 1, k: 1024, m: MiB, g: 1024 * MiB, t: 1024 * 1024 * MiB };

/** Docker's and Kubernetes' spellings: 536870912, 512m, 512M, 512Mi, 512MiB, 2g, 1.5G (binary units). */
export const MEMORY_SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgGtT]([iI]?[bB]?)?|[bB])?\\s*$';

/** Bytes, or undefined when the text is not a size. */
export function parseMemorySize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b?)|b)?\s*$/i.exec(text);
  if (!match) return undefined;
  const bytes = Math.floor(Number(match[1]) * UNITS[(match[2] ?? '').toLowerCase()]!);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Where the kernel publishes the container's limit: cgroup v2's unified file, then cgroup v1's. */
export const CGROUP_FILES = {
  v2: '/sys/fs/cgroup/memory.max',
  v1: '/sys/fs/cgroup/memory/memory.limit_in_bytes',
} as const;

/** cgroup v1 writes "no limit" as a page-rounded 2^63 - 1; anything past 2^60 bytes (1 EiB) is that. */
const V1_UNLIMITED = 2 ** 60;

export interface MemoryProbe {
  /** The cgroup files to read (tests point them at fixtures); null skips that version. */
  v2?: string | null;
  v1?: string | null;
  readFile?: (path: string) => string;
}

export type MemoryLimitSource = 'MEMORY_LIMIT' | 'cgroup v2' | 'cgroup v1';

export interface MemoryLimit {
  bytes: number;
  source: MemoryLimitSource;
}

/** The container's limit from cgroup v2, else v1; undefined without one (no file, `max`, v1's unlimited). */
export function readCgroupLimit(probe: MemoryProbe = {}): MemoryLimit | undefined {
  const read = probe.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  const attempt = (path: string | null | undefined) => {
    if (!path) return undefined;
    try {
      return read(path).trim();
    } catch {
      return undefined; // not this cgroup version, or not Linux
    }
  };
  const v2 = attempt(probe.v2 === undefined ? CGROUP_FILES.v2 : probe.v2);
  if (v2 !== undefined) {
    const bytes = v2 === 'max' ? undefined : Number(v2);
    return bytes && Number.isSafeInteger(bytes) ? { bytes, source: 'cgroup v2' } : undefined;
  }
  const v1 = attempt(probe.v1 === undefined ? CGROUP_FILES.v1 : probe.v1);
  const bytes = v1 === undefined ? undefined : Number(v1);
  return bytes && bytes > 0 && bytes < V1_UNLIMITED ? { bytes, source: 'cgroup v1' } : undefined;
}

/** MEMORY_LIMIT when set (it wins: a limit the cgroup does not show, e.g. a VM's share), else the cgroup's. */
export function memoryLimit(setting: string | undefined, probe: MemoryProbe = {}): MemoryLimit | undefined {
  if (setting !== undefined) {
    const bytes = parseMemorySize(setting);
    return bytes === undefined ? undefined : { bytes, source: 'MEMORY_LIMIT' };
  }
  return readCgroupLimit(probe);
}

/** Share of the limit given to the V8 heaps of all workers: the rest is native memory (buffers, sockets, ICU, code). */
const HEAP_SHARE = 0.75;
/** The smallest heap recommended: below it Colloquy's own modules and caches do not fit. */
const MIN_HEAP_MB = 96;
/** Requests get 503 once a process's resident memory passes this share of its slice of the limit. */
const RSS_SHED_SHARE = 0.9;
/** ... or once its heap passes this share of its heap limit (V8 collects ever harder, then aborts, near it). */
const HEAP_SHED_SHARE = 0.85;

export interface MemorySettings {
  limit: MemoryLimit;
  /** Processes sharing the limit (WORKERS). */
  workers: number;
  /** The `--max-old-space-size` (MiB) recommended for each process; the supervisor gives it to its workers. */
  heapMb: number;
  /** OVERLOAD_MAX_HEAP_BYTES derived: heap use past which a process sheds load. */
  maxHeapBytes: number;
  /** Resident memory past which a process sheds load. */
  maxRssBytes: number;
}

/**
 * The heap size and the load-shedding thresholds for `workers` processes sharing `limit`. `heapLimitBytes`
 * is V8's actual heap limit in this process (`--max-old-space-size`, or V8's default): shedding starts below
 * whichever of it and the recommended heap is lower.
 */
export function deriveMemorySettings(
  limit: MemoryLimit,
  workers: number,
  heapLimitBytes: number,
): MemorySettings {
  const perProcess = limit.bytes / Math.max(1, workers);
  const heapMb = Math.max(MIN_HEAP_MB, Math.floor((perProcess * HEAP_SHARE) / MiB));
  return {
    limit,
    workers,
    heapMb,
    maxHeapBytes: Math.floor(HEAP_SHED_SHARE * Math.min(heapLimitBytes, heapMb * MiB)),
    maxRssBytes: Math.floor(RSS_SHED_SHARE * perProcess),
  };
}

/** `--max-old-space-size` as set in NODE_OPTIONS or this process's flags (MiB), if any. */
export function heapFlagMb(
  nodeOptions: string | undefined,
  execArgv: readonly string[] = [],
): number | undefined {
  const all = [...(nodeOptions ?? '').split(/\s+/), ...execArgv];
  const flag = all.reverse().find((a) => /^--max[-_]old[-_]space[-_]size=\d+$/.test(a));
  return flag ? Number(flag.split('=')[1]) : undefined;
}

export const formatMiB = (bytes: number) => `${Math.round(bytes / MiB)} MiB`;
