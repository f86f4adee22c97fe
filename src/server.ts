import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from './app.js';
import { describeDatabaseTarget } from './config/database-url.js';
import type { Config } from './config/load-config.js';
import { adaptHeapGrowth } from './core/heap-growth.js';
import { createLogger, flushLogExport, type Logger } from './core/logger.js';
import { type DatabaseHandle, openDatabase } from './db/database.js';
import { migrateUp, migrationStatus } from './db/migrator.js';
import { sweepOrphanedGenerations } from './features/conversations/sweep.js';
import { startUsageJobs } from './features/limits/rollups.js';
import { providerSecrets } from './providers/cloud-config.js';
import { VERSION } from './version.js';

/** After SHUTDOWN_TIMEOUT has ended the open streams in-band, how long they get to flush before every connection left is destroyed. */
const LAST_RESORT_MS = 2_000;

/** Values the logger scrubs wherever they appear: Colloquy's own secrets and every provider credential. */
export const logSecrets = (config: Config): (string | undefined)[] => [
  config.secretKey,
  config.adminKey,
  config.database.dialect === 'sqlite' ? undefined : config.database.url,
  ...providerSecrets(config.providers),
];

export const loggerFor = (config: Config): Logger =>
  createLogger({ ...config.log, secrets: logSecrets(config) });

export interface RunningServer {
  app: FastifyInstance;
  url: string;
  /** Drains and closes everything; resolves once the process may exit. */
  close(): Promise<void>;
}

/**
 * Opens storage, brings the schema up to date (development) or refuses to start behind it (staging and
 * production), then listens. SIGTERM/SIGINT drain and exit 0.
 */
export async function startServer(
  config: Config,
  logger: Logger = loggerFor(config),
): Promise<RunningServer> {
  if (config.secretKeyGenerated) {
    logger.warn('SECRET_KEY is not set: using a random key for this process; sessions end when it restarts');
  }
  const database = openDatabase(config.database);
  let redis: Redis | undefined;
  let cacheRedis: Redis | undefined;
  try {
    await prepareSchema(config, database, logger);
    if (config.redisUrl) {
      // ioredis is loaded only when Redis is configured: idle memory.
      const { createRedis, waitForRedis } = await import('./core/redis.js');
      redis = createRedis(config.redisUrl, logger);
      if (!(await waitForRedis(redis)))
        logger.warn('starting without Redis; it is retried in the background');
    }
    if (config.cacheRedisUrl) {
      // The cache's Redis is waited for no more than the main one: until it answers, lookups miss.
      const { createRedis } = await import('./core/redis.js');
      cacheRedis = createRedis(config.cacheRedisUrl, logger);
    }
    // Replies left 'streaming' by a crash become 'partial'. With Redis there may be other replicas whose
    // live generations touch their rows every few seconds, so only rows quiet for a minute are orphans.
    const swept = await sweepOrphanedGenerations(database.db, { staleAfterMs: redis ? 60_000 : 0 });
    if (swept) logger.warn({ swept }, 'marked replies interrupted by a previous crash as partial');
    const stopUsageJobs = startUsageJobs({
      db: database.db,
      logger,
      usageRetentionDays: config.limits.usageRetentionDays,
      timeZone: config.timeZone,
    });
    let draining = false;
    const app = await buildApp({ config, logger, database, redis, cacheRedis, isDraining: () => draining });
    // A burst of thousands of clients connecting at once (SSE fan-in) must queue in the kernel, not be reset:
    // Node's default backlog is 511 (the kernel caps this at net.core.somaxconn).
    const url = await app.listen({ port: config.port, host: config.host, backlog: 8192 });
    // After listening, the server's only errors are failed accepts (EMFILE when out of file descriptors):
    // that connection is dropped, the listener keeps serving. Unhandled, the event would kill the process
    // and every other connection with it.
    // Each client connection may hold an upstream one: past half the descriptors, new connections are
    // refused rather than letting the process run out (then any file or socket it opens fails, and a
    // failing timer read of /proc would crash it with every stream it holds).
    const descriptors = openFileLimit();
    if (descriptors) app.server.maxConnections = Math.max(64, Math.floor((descriptors - 256) / 2));
    let lastAcceptError = 0;
    app.server.on('error', (err) => {
      if (Date.now() - lastAcceptError < 10_000) return;
      lastAcceptError = Date.now();
      logger.error({ err }, 'could not accept a connection (further ones are not logged for 10 s)');
    });
    logger.info(
      {
        version: VERSION,
        env: config.env,
        database: describeDatabaseTarget(config.database),
        redis: Boolean(redis),
      },
      `colloquy listening on ${url}`,
    );

    let closing: Promise<void> | undefined;
    const close = () => {
      closing ??= (async () => {
        // Readiness turns false at once. For SHUTDOWN_DELAY the listener stays open, answering normally but
        // closing each connection, while load balancers take this instance out; then the listener closes (a
        // new connection is refused, which a proxy retries elsewhere even for a POST), requests still arriving
        // on open connections are served, and in-flight ones (streams included) get the drain period.
        draining = true;
        // Idle keep-alive connections are ended from the start of the delay, while the listener is still open:
        // a proxy's pool (nginx's upstream keepalive) then holds none of ours when the listener closes, and every
        // answer from now on closes its connection. A connection whose request was in flight (a stream begun
        // before SIGTERM, answered keep-alive) is ended by the lifecycle plugin in the tick its response
        // finishes, before a proxy can reuse it. The sweep is the backstop for answers that plugin does not see
        // (health, metrics), which would otherwise hold the process open for the whole keep-alive timeout (72 s
        // by default). It never ends a connection a proxy has just opened, its request still on the way: Node's
        // closeIdleConnections() counts a connection busy from its accept (its HTTP parser starts active).
        const idleSweep = setInterval(() => app.server.closeIdleConnections(), 100);
        app.server.closeIdleConnections();
        if (config.http.shutdownDelayMs > 0) await sleep(config.http.shutdownDelayMs);
        const closed = app.close();
        let lastResort: NodeJS.Timeout | undefined;
        const drainTimer = setTimeout(() => {
          logger.warn('drain period over: ending the streams still open');
          app.endOpenStreams();
          // Streams ended in-band get a moment to flush their last events. Then every connection still open is
          // destroyed: one that never sent a request (Node stops its headers timeout once close begins), or
          // an answer stuck behind a client that reads nothing, would otherwise hold the exit forever.
          lastResort = setTimeout(() => {
            logger.warn('connections still open after the drain: closing them');
            app.server.closeAllConnections();
          }, LAST_RESORT_MS);
        }, config.http.shutdownTimeoutMs);
        await closed;
        clearInterval(idleSweep);
        clearTimeout(drainTimer);
        clearTimeout(lastResort);
        await stopUsageJobs();
        await Promise.allSettled([database.close(), redis?.quit(), cacheRedis?.quit()]);
        logger.info('colloquy stopped');
        await flushLogExport();
      })();
      return closing;
    };
    return { app, url, close };
  } catch (err) {
    await Promise.allSettled([database.close(), redis?.quit(), cacheRedis?.quit()]);
    throw err;
  }
}

/** The process's open-file limit (Linux), or undefined where it cannot be read. */
function openFileLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line ? Number(line[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function prepareSchema(config: Config, database: DatabaseHandle, logger: Logger) {
  const status = await migrationStatus(database.db);
  // An older release on a newer, expand-only schema (a rollback) serves, and says so; a schema it cannot run
  // on (a newer contract migration, or its own migrations skipped) stops the start with the reason.
  if (!status.compatible) throw new Error(`cannot start on this database: ${status.summary}`);
  if (status.unknown.length) logger.warn({ unknown: status.unknown }, status.summary);
  if (status.pending.length === 0) return;
  if (config.autoMigrate) {
    const applied = await migrateUp(database.db);
    logger.info({ applied }, `applied ${applied.length} migration(s)`);
    return;
  }
  throw new Error(
    `the database schema is behind this version: pending migrations ${status.pending.join(', ')}. ` +
      'Run `colloquy migrate up` (or set AUTO_MIGRATE=true) and start again.',
  );
}

/** Runs until SIGTERM/SIGINT, then drains and exits 0 (non-zero if draining itself failed). */
export async function serveForever(config: Config): Promise<void> {
  // V8 pretenures an allocation site whose objects once survived (a request's AbortSignals did under load):
  // it then allocates them straight in the old generation, where, dead, they still hold the young objects they
  // point to through every scavenge. At 1,000 requests/s that promoted ~2.2 MB per scavenge and made each
  // pause ~8 ms; without pretenuring ~0.5 MB and ~3.5 ms (bench scenario 2, --trace-gc-nvp).
  setFlagsFromString('--no-allocation-site-pretenuring');
  // A request's objects that outlive two scavenges (~4 KiB of every request at 1,000 requests/s) fill the old
  // generation, and V8 sizes its next limit ~1.25× the live heap: a mark-compact every 3–4 s, each stalling
  // ~50 requests by 30–50 ms (the whole p99 at that rate, --trace-gc next to per-request latencies). Letting
  // a small old generation grow to 2× its live size before collecting makes that every ~20 s; a large one
  // (thousands of open streams) gets 64 MiB of room instead of as much again.
  adaptHeapGrowth();
  const logger = loggerFor(config);
  if (config.workers > 1 && cluster.isPrimary) {
    const { clusterRefusal, superviseWorkers } = await import('./cluster/supervisor.js');
    const refusal = clusterRefusal(config);
    if (refusal) throw new Error(refusal);
    // Migrations run once, here, before any worker starts (each worker then finds the schema current).
    const database = openDatabase(config.database);
    try {
      await prepareSchema(config, database, logger);
    } finally {
      await database.close();
    }
    superviseWorkers(config, logger);
    return;
  }
  const server = await startServer(config, logger).catch((err: Error) => {
    // A worker's IPC channel would keep it alive after a failed start: exit, and let the supervisor decide.
    if (cluster.isWorker) {
      console.error(`colloquy: worker ${process.pid} could not start: ${err.message}`);
      process.exit(1);
    }
    throw err;
  });
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (cluster.isWorker) {
    // Which worker answered: operators (and the tests) can tell the workers apart.
    server.app.server.prependListener('request', (_request, response) =>
      response.setHeader('x-colloquy-worker', String(process.pid)),
    );
    // The primary is gone (killed without draining us): nobody restarts or supervises this worker any more.
    process.once('disconnect', () => stop('primary exited'));
  }
}
