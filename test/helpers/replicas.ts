import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestApp, type TestApp } from './app.js';
import { type ChatStack, type ChatStackOptions, startChatStack, UPSTREAM_KEY } from './chat-stack.js';
import { freePort, startRedisServer } from './net.js';

export const redisServerInstalled = (process.env.PATH ?? '')
  .split(':')
  .some((dir) => existsSync(path.join(dir, 'redis-server')));

export interface Replicas {
  /** A chat stack (with its fake upstream), listening at a.url. */
  a: ChatStack;
  /** A second application on A's database and upstream, listening at bUrl. */
  b: TestApp;
  bUrl: string;
  /** The replicas' own redis-server (replace it after killing it: close() stops whichever runs). */
  redis: ChildProcess;
  redisPort: number;
  close(): Promise<void>;
}

/**
 * How long a consistency test waits for a change to show on another replica. The product's promise is
 * "within a second", but a loaded machine can take seconds and tests do not assert speed: the wait is
 * generous and the time it took is printed. Far below the replicas' fallback reload (below), so only a Redis
 * announcement can carry a change that quickly.
 */
export const PROPAGATION_WAIT_MS = 20_000;
/** The replicas' fallback reload (AppDeps.fallbackReloadMs): far beyond any wait of theirs. */
const FALLBACK_RELOAD_MS = 10 * 60_000;

/**
 * Calls `attempt` until it holds, bounded by count and PROPAGATION_WAIT_MS; answers how many calls it took
 * and how many ms since `since` (a performance.now() reading, default now), for the test to print.
 */
export async function pollUntil(
  attempt: () => Promise<boolean>,
  what: string,
  since = performance.now(),
): Promise<{ calls: number; ms: number }> {
  const deadline = Date.now() + PROPAGATION_WAIT_MS;
  let calls = 0;
  while (calls < 1_000) {
    calls++;
    if (await attempt()) return { calls, ms: Math.round(performance.now() - since) };
    if (Date.now() > deadline) break;
    await sleep(20);
  }
  throw new Error(`${what} did not happen within ${PROPAGATION_WAIT_MS} ms (${calls} calls)`);
}

/**
 * Two replicas sharing one database and a throw-away redis-server of their own, so a test may kill or pause
 * Redis without disturbing other suites. `env` goes to both; `a` and `bEnv` add to one. With
 * `announcementsOnly`, neither reloads what it caches on its own within a test's wait: only a Redis
 * announcement carries a change between them.
 */
export async function startReplicas(options: {
  env: Record<string, string>;
  a?: Omit<ChatStackOptions, 'env'> & { env?: Record<string, string> };
  bEnv?: Record<string, string>;
  announcementsOnly?: boolean;
}): Promise<Replicas> {
  const fallbackReloadMs = options.announcementsOnly ? FALLBACK_RELOAD_MS : undefined;
  const redisPort = await freePort();
  const redis = await startRedisServer(redisPort);
  const env = { REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...options.env };
  let a: ChatStack | undefined;
  let b: TestApp | undefined;
  const stop = async (current: ChildProcess) => {
    b?.app.server.closeAllConnections();
    await b?.close();
    await a?.close();
    current.kill('SIGKILL');
  };
  try {
    a = await startChatStack({
      routing: null,
      fallbackReloadMs,
      ...options.a,
      env: { ...env, ...options.a?.env },
    });
    b = await startTestApp({
      testDb: a.t.testDb,
      migrate: false,
      fallbackReloadMs,
      env: {
        ...env,
        OPENAI_BASE_URL: a.fake.baseUrl,
        OPENAI_API_KEY: UPSTREAM_KEY,
        DEMO_WORD_DELAY_MS: '0',
        ...options.bEnv,
      },
    });
    const replicas: Replicas = {
      a,
      b,
      bUrl: await b.listen(),
      redis,
      redisPort,
      close: () => stop(replicas.redis),
    };
    return replicas;
  } catch (err) {
    await stop(redis);
    throw err;
  }
}
