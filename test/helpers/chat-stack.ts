import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Selectable } from 'kysely';
import { stringify as toYaml } from 'yaml';
import type { RoutingFile } from '../../src/config/routing-file.js';
import type { UsageRecordsTable } from '../../src/db/schema.js';
import { type FakeUpstream, type FakeUpstreamOptions, startFakeUpstream } from '../fake-upstream/server.js';
import { bearer, createUser, startTestApp, type TestApp } from './app.js';
import { markSuiteRan, type TestDialect } from './databases.js';

/** The key Colloquy sends to the fake upstreams (which refuse any other). */
export const UPSTREAM_KEY = 'sk-fake-upstream-key-for-tests';

export interface ChatStack {
  t: TestApp;
  /** Colloquy over real HTTP, e.g. http://127.0.0.1:43210 */
  url: string;
  /** The upstream behind OPENAI_BASE_URL (absent with `upstream: false`). */
  fake: FakeUpstream;
  /** A second upstream, the `backup` provider of the routing file. */
  backup: FakeUpstream;
  /** A Colloquy API key of a regular user. */
  apiKey: string;
  apiKeyId: string;
  userId: string;
  /** The usage row of a request, once it has been written (recording is asynchronous). */
  usageRow(requestId: string): Promise<Selectable<UsageRecordsTable>>;
  close(): Promise<void>;
}

export interface ChatStackOptions {
  dialect?: TestDialect;
  env?: Record<string, string>;
  /** false: no OPENAI_* variables at all (the demo model answers). */
  upstream?: boolean;
  /** The routing file; the default declares `backup` and the alias `ha-model` (openai, then backup). */
  routing?: ((backupUrl: string) => RoutingFile) | null;
  fakeOptions?: FakeUpstreamOptions;
  /** A clock (epoch ms) for session lengths (the break reminder). */
  now?: () => number;
  /** See AppDeps.fallbackReloadMs. */
  fallbackReloadMs?: number;
}

export const defaultRouting = (backupUrl: string): RoutingFile => ({
  providers: [{ name: 'backup', type: 'openai', base_url: backupUrl }],
  models: [
    {
      name: 'ha-model',
      deployments: [
        { provider: 'openai', model: 'gpt-4o-mini' },
        { provider: 'backup', model: 'gpt-4o-mini', priority: 1 },
      ],
    },
  ],
  router: {
    backoff: { initial_ms: 10, max_ms: 50 },
    max_retry_after_ms: 5_000,
    // Many scripted failures hit the same deployments: keep the breaker out of these tests.
    circuit_breaker: { failures: 1_000, cooldown_ms: 1_000 },
  },
});

/** Colloquy listening on a port, in front of fake upstreams, with a user and an API key. */
export async function startChatStack(options: ChatStackOptions = {}): Promise<ChatStack> {
  const withUpstream = options.upstream !== false;
  const fake = await startFakeUpstream({ apiKey: UPSTREAM_KEY, ...options.fakeOptions });
  const backup = await startFakeUpstream({ apiKey: UPSTREAM_KEY, ...options.fakeOptions });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-chat-'));
  const env: Record<string, string> = {
    DEMO_WORD_DELAY_MS: '0',
    // Load shedding answers 503 when the event loop lags, which a busy test machine does: not tested here.
    OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '0',
    // Limits and the response cache have suites of their own (test/production); here they would only
    // turn concurrency and repeated-request tests into 429s and cache hits.
    RATE_LIMIT_ENABLED: 'false',
    RESPONSE_CACHE_TTL_SECONDS: '0',
    ...options.env,
  };
  // The production-like combination: PostgreSQL together with Redis, when both are available.
  if (options.dialect === 'postgres' && process.env.TEST_REDIS_URL && !env.REDIS_URL) {
    env.REDIS_URL = process.env.TEST_REDIS_URL;
    markSuiteRan('redis');
  }
  if (withUpstream) {
    env.OPENAI_BASE_URL = fake.baseUrl;
    env.OPENAI_API_KEY ??= UPSTREAM_KEY;
  }
  const routing = options.routing === undefined ? defaultRouting : options.routing;
  if (routing) {
    const file = path.join(dir, 'colloquy.yaml');
    const document = routing(backup.baseUrl);
    // The backup provider's key comes from the environment, as operators are told to do.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the routing file's own ${VAR} syntax
    for (const p of document.providers ?? []) p.api_key ??= '${BACKUP_API_KEY}';
    env.BACKUP_API_KEY = UPSTREAM_KEY;
    writeFileSync(file, toYaml(document));
    env.COLLOQUY_CONFIG = file;
  }
  let t: TestApp | undefined;
  try {
    t = await startTestApp({
      dialect: options.dialect ?? 'sqlite',
      env,
      now: options.now,
      fallbackReloadMs: options.fallbackReloadMs,
    });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    const user = await createUser(t, 'chat-user@example.com');
    const created = await t.inject({
      method: 'POST',
      url: '/api/keys',
      headers: bearer(user.accessToken),
      payload: { name: 'chat tests' },
    });
    if (created.statusCode !== 201)
      throw new Error(`create key failed: ${created.statusCode} ${created.body}`);
    const key = created.json() as { id: string; key: string };
    const app = t;
    return {
      t: app,
      url,
      fake,
      backup,
      apiKey: key.key,
      apiKeyId: key.id,
      userId: user.id,
      usageRow: async (requestId) => {
        // A stream cut short is recorded after its usage is estimated: the tokenizer's worker may still be
        // starting on a busy machine (seconds), so the wait is bounded by a deadline as well as a count.
        const deadline = Date.now() + 30_000;
        for (let i = 0; i < 3_000 && Date.now() < deadline; i++) {
          const row = await app.database.db
            .selectFrom('usage_records')
            .selectAll()
            .where('request_id', '=', requestId)
            .executeTakeFirst();
          if (row) return row;
          await sleep(10);
        }
        throw new Error(`no usage row for ${requestId}`);
      },
      close: async () => {
        // Clients (fetch, the SDKs) may hold idle keep-alive sockets that would delay close() by seconds.
        app.app.server.closeAllConnections();
        await app.close();
        await fake.close();
        await backup.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await t?.close();
    await fake.close();
    await backup.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The `data:` payloads of a server-sent-events body, in order. */
export function sseData(text: string): string[] {
  return text
    .split(/\r?\n\r?\n/)
    .map((block) =>
      block
        .split(/\r?\n/)
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).replace(/^ /, ''))
        .join('\n'),
    )
    .filter((data) => data !== '');
}

/** Polls until `check` holds, or fails after `timeoutMs`. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 1_000,
  what = 'condition',
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(10);
  }
  throw new Error(`${what} did not hold within ${timeoutMs} ms`);
}
