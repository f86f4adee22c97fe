import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type SqliteDatabase from 'better-sqlite3';

export interface CheckpointerOptions {
  /** WAL size at which the background thread is started (SQLite's own checkpoint threshold is ~4 MiB). */
  startAtBytes?: number;
  /** How often the WAL is looked at; a checkpoint is asked for when it was written since the last one. */
  intervalMs?: number;
}

export interface Checkpointer {
  /** Checkpoints the background thread completed (every frame written back). */
  readonly completed: number;
  close(): Promise<void>;
}

/*
 * The background thread's whole program, kept as source so that it runs the same from src/ (tsx) and dist/.
 * It opens its own connection (SQLite connections must not cross threads) and never waits for a lock:
 * a busy checkpoint is simply asked for again on the next look.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true, timeout: 0 });
parentPort.on('message', () => {
  try {
    let result;
    // Frames committed during a pass are left for the next, each shorter than the one before. Only a pass
    // that leaves none lets SQLite rewind the WAL; without one, the file would grow for as long as writes go on.
    for (let pass = 0; pass < 5; pass++) {
      [result] = db.pragma('wal_checkpoint(PASSIVE)');
      if (result.busy !== 0 || result.log === result.checkpointed) break;
    }
    parentPort.postMessage({ done: result.busy === 0 && result.log === result.checkpointed });
  } catch {
    // A failing checkpoint (disk full, I/O) is the same failure the next write reports to its request.
    parentPort.postMessage({ done: false });
  }
});
`;

/**
 * Moves SQLite's WAL checkpoints off the request thread. A checkpoint copies the WAL back into the database
 * file and fsyncs it; better-sqlite3 is synchronous, so SQLite's automatic checkpoint (run inside whichever
 * commit crosses 1,000 pages) stalled every request for the fsync: 7–40 ms on this project's CI disks, the
 * whole p99 of the latency benchmark. The request connection's automatic checkpoints are turned off, and a
 * worker thread with its own connection checkpoints instead, once a second while the WAL is being written.
 * The thread (~11 MiB) starts once the WAL first reaches `startAtBytes`, so an idle server never pays for it;
 * if it cannot run, SQLite's own automatic checkpoints come back.
 */
export function startCheckpointer(
  sqlite: SqliteDatabase.Database,
  file: string,
  options: CheckpointerOptions = {},
): Checkpointer {
  const startAtBytes = options.startAtBytes ?? 4 << 20;
  sqlite.pragma('wal_autocheckpoint = 0');
  let worker: Worker | undefined;
  let inFlight = false;
  let askedAtMtime = -1;
  let completed = 0;
  let closed = false;

  const startWorker = () => {
    const started = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path: file, driver: createRequire(import.meta.url).resolve('better-sqlite3') },
      // A PRAGMA loop needs almost no heap.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    started.unref();
    started.on('message', (reply: { done: boolean }) => {
      inFlight = false;
      if (reply.done) completed++;
    });
    const giveUp = () => {
      if (closed) return;
      stop();
      sqlite.pragma('wal_autocheckpoint = 1000');
    };
    started.once('error', giveUp);
    started.once('exit', giveUp);
    return started;
  };

  const look = async () => {
    const wal = await stat(`${file}-wal`).catch(() => undefined);
    if (closed || !wal || inFlight || wal.mtimeMs === askedAtMtime) return;
    if (!worker && wal.size < startAtBytes) return;
    worker ??= startWorker();
    inFlight = true;
    askedAtMtime = wal.mtimeMs;
    worker.postMessage(null);
  };

  const timer = setInterval(() => void look(), options.intervalMs ?? 1_000);
  timer.unref();
  const stop = () => {
    closed = true;
    clearInterval(timer);
    const stopping = worker?.terminate();
    worker = undefined;
    return stopping;
  };
  return {
    get completed() {
      return completed;
    },
    async close() {
      await stop();
    },
  };
}
