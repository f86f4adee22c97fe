import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import type { Config } from '../config/load-config.js';
import { formatMiB, heapFlagMb } from '../config/memory-limit.js';
import type { Logger } from '../core/logger.js';
import { aggregateWorkerMetrics } from './metrics.js';

/** A worker that lived less than this and died counts towards the crash-loop guard. */
const QUICK_DEATH_MS = 30_000;
/** This many quick deaths in a row and the supervisor gives up (exit 1) instead of restarting forever. */
const CRASH_LOOP_LIMIT = 5;
const FIRST_RESTART_DELAY_MS = 250;
const MAX_RESTART_DELAY_MS = 10_000;
/** Beyond SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT, what workers get to close storage before they are killed. */
const SHUTDOWN_MARGIN_MS = 10_000;

/**
 * Why WORKERS > 1 needs Redis: without it each process keeps this state for itself, so limits multiply by
 * the worker count and a revocation or a cancel reaches one process in N.
 */
export const WORKERS_NEED_REDIS =
  'rate limits, login throttling, budgets, key and session revocation, live generations (cancel, resume) and settings changes are per process without it';

/** The start-up refusal for a clustered `serve` that would be incorrect, or undefined when it may start. */
export function clusterRefusal(config: Config): string | undefined {
  if (config.workers > 1 && !config.redisUrl)
    return `WORKERS=${config.workers} needs REDIS_URL: ${WORKERS_NEED_REDIS}; set REDIS_URL or WORKERS=1`;
  if (config.workers > 1 && config.log.file)
    return `WORKERS=${config.workers} cannot write LOG_FILE: every worker would rotate the same file; log to stdout (unset LOG_FILE) or set WORKERS=1`;
  return undefined;
}

/**
 * The primary of a clustered `serve`: runs no app, forks `config.workers` workers that share the port
 * (Node's cluster module, connections handed out round-robin), restarts a worker that dies (with backoff,
 * giving up loudly after CRASH_LOOP_LIMIT quick deaths in a row), drains every worker on SIGTERM/SIGINT and
 * exits once all have exited, and answers workers' /metrics with everyone's metrics.
 */
export function superviseWorkers(config: Config, logger: Logger): void {
  const registry = new client.Registry();
  registry.setDefaultLabels({ track: config.metrics.track });
  const liveWorkers = new client.Gauge({
    name: 'colloquy_workers',
    help: 'Worker processes serving the port (WORKERS)',
    registers: [registry],
    collect() {
      this.set(Object.keys(cluster.workers ?? {}).length);
    },
  });
  const restarts = new client.Counter({
    name: 'colloquy_worker_restarts_total',
    help: 'Workers started again after one died',
    registers: [registry],
  });
  void liveWorkers;
  aggregateWorkerMetrics(registry);

  const startedAt = new Map<number, number>();
  const pending = new Set<NodeJS.Timeout>();
  let quickDeaths = 0;
  let stopping: { exitCode: number } | undefined;

  const fork = () => {
    // Development without SECRET_KEY: one random key for all workers, or a token signed by one is refused by the others.
    const worker = cluster.fork(config.secretKeyGenerated ? { SECRET_KEY: config.secretKey } : {});
    startedAt.set(worker.id, Date.now());
    logger.info({ worker: worker.id, workerPid: worker.process.pid }, 'worker started');
  };

  cluster.on('exit', (worker: Worker, code: number | null, signal: string | null) => {
    const lived = Date.now() - (startedAt.get(worker.id) ?? Date.now());
    startedAt.delete(worker.id);
    if (stopping) {
      // SIGTERM itself: a worker still starting had nothing in flight, and its handler was not installed yet.
      if (code !== 0 && signal !== 'SIGTERM') stopping.exitCode = 1;
      logger.info({ worker: worker.id, workerPid: worker.process.pid, code, signal }, 'worker stopped');
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info('colloquy stopped (all workers exited)');
        process.exit(stopping.exitCode);
      }
      return;
    }
    quickDeaths = lived < QUICK_DEATH_MS ? quickDeaths + 1 : 1;
    if (quickDeaths >= CRASH_LOOP_LIMIT) {
      logger.fatal(
        { worker: worker.id, code, signal, deaths: quickDeaths },
        `workers keep dying: ${quickDeaths} in a row within ${QUICK_DEATH_MS / 1000} s of starting; giving up (see the workers' errors above)`,
      );
      stop('crash loop', 1);
      return;
    }
    const delay = Math.min(MAX_RESTART_DELAY_MS, FIRST_RESTART_DELAY_MS * 2 ** (quickDeaths - 1));
    logger.error(
      { worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: delay },
      'worker died; starting another',
    );
    const timer = setTimeout(() => {
      pending.delete(timer);
      restarts.inc();
      fork();
    }, delay);
    pending.add(timer);
  });

  const stop = (reason: string, exitCode = 0) => {
    if (stopping) return;
    stopping = { exitCode };
    for (const timer of pending) clearTimeout(timer);
    pending.clear();
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => Boolean(w));
    logger.info({ reason, workers: workers.length }, 'shutting down: draining every worker');
    if (workers.length === 0) process.exit(exitCode);
    // Each worker runs its own graceful shutdown (src/server.ts) on SIGTERM.
    for (const worker of workers) worker.process.kill('SIGTERM');
    const budget = config.http.shutdownDelayMs + config.http.shutdownTimeoutMs + SHUTDOWN_MARGIN_MS;
    setTimeout(() => {
      const left = Object.values(cluster.workers ?? {}).filter((w): w is Worker => Boolean(w));
      logger.error(
        { workers: left.length, afterMs: budget },
        'workers still running after the drain period: killing them',
      );
      for (const worker of left) worker.process.kill('SIGKILL');
      setTimeout(() => process.exit(1), 1_000).unref();
    }, budget).unref();
  };
  // `on`, not `once`: a second signal while draining must not kill the primary (and orphan its workers).
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  if (config.database.dialect === 'sqlite')
    logger.warn(
      'several workers on SQLite: correct (WAL, busy_timeout), but every write waits for the one writer with the event loop blocked; use PostgreSQL for WORKERS > 1 under write load (docs/deployment.md)',
    );
  if (config.secretKeyGenerated)
    logger.warn(
      'SECRET_KEY is not set: using a random key shared by the workers; sessions end when serve restarts',
    );
  // Workers share the memory limit: each gets its slice as V8 heap, unless the operator sized it already.
  if (config.memory && heapFlagMb(process.env.NODE_OPTIONS, process.execArgv) === undefined) {
    cluster.setupPrimary({ execArgv: [...process.execArgv, `--max-old-space-size=${config.memory.heapMb}`] });
    logger.info(
      {
        memoryLimit: config.memory.limit.bytes,
        source: config.memory.limit.source,
        heapMb: config.memory.heapMb,
      },
      `memory limit ${formatMiB(config.memory.limit.bytes)} (${config.memory.limit.source}): each worker's heap is ${config.memory.heapMb} MiB`,
    );
  }
  logger.info({ workers: config.workers }, `starting ${config.workers} workers on port ${config.port}`);
  for (let i = 0; i < config.workers; i++) fork();
}
