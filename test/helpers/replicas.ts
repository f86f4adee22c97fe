import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
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
 * Two replicas sharing one database and a throw-away redis-server of their own, so a test may kill or pause
 * Redis without disturbing other suites. `env` goes to both; `a` and `bEnv` add to one.
 */
export async function startReplicas(options: {
  env: Record<string, string>;
  a?: Omit<ChatStackOptions, 'env'> & { env?: Record<string, string> };
  bEnv?: Record<string, string>;
}): Promise<Replicas> {
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
    a = await startChatStack({ routing: null, ...options.a, env: { ...env, ...options.a?.env } });
    b = await startTestApp({
      testDb: a.t.testDb,
      migrate: false,
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
