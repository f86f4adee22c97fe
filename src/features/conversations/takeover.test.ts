import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import {
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  type TestApp,
  type TestUser,
} from '../../../test/helpers/app.js';
import {
  createTestDatabase,
  DIALECTS,
  markSuiteRan,
  type TestDatabase,
} from '../../../test/helpers/databases.js';
import { loadConfig } from '../../config/load-config.js';
import { openDatabase } from '../../db/database.js';
import { migrateUp } from '../../db/migrator.js';
import { FakeGateway } from './testing/fake-gateway.js';
import { SseConnection } from './testing/sse-client.js';

const redisUrl = process.env.TEST_REDIS_URL;
const REPLICA = fileURLToPath(new URL('./testing/replica-process.ts', import.meta.url));

/** Replica A in its own process (so it can be SIGKILLed); resolves with its URL once it listens (tsx compiles the
 * whole app first: tens of seconds on a busy machine). */
async function spawnReplica(databaseUrl: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', REPLICA], {
    env: { ...process.env, REPLICA_DATABASE_URL: databaseUrl, REDIS_URL: redisUrl! },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`replica did not start: ${output.slice(-500)}`)), 90_000);
    const onData = (d: Buffer) => {
      output += d;
      const found = /LISTENING (\S+)/.exec(output);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => {
      output += d;
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`replica exited (${code}): ${output.slice(-500)}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return { child, url };
}

// Issue 19 item 4: a replica killed mid-generation (SIGKILL, no shutdown) no longer leaves its conversation
// stuck until the orphan sweep: once its lease expires (seconds), another replica finishes the generation
// with the text of its Redis event log, cancel answers, and the conversation takes its next message.
for (const dialect of DIALECTS) {
  describe(`a replica killed mid-generation is taken over (${dialect})`, {
    skip: !redisUrl && 'TEST_REDIS_URL is not set',
  }, () => {
    let testDb: TestDatabase;
    let b: TestApp;
    let user: TestUser;
    let replica: { child: ChildProcess; url: string } | undefined;
    let redis: Redis;

    before(async () => {
      markSuiteRan('redis');
      testDb = await createTestDatabase(dialect);
      const config = loadConfig(
        { DATABASE_URL: testDb.url, SECRET_KEY: 'x'.repeat(40) },
        { dotenvDir: null },
      );
      const database = openDatabase(config.database);
      await migrateUp(database.db);
      await database.close();
      b = await startTestApp({
        testDb,
        migrate: false,
        gateway: new FakeGateway(),
        env: { REDIS_URL: redisUrl!, RATE_LIMIT_ENABLED: 'false' },
      });
      user = await createUser(b, `takeover-${dialect}@example.com`);
      redis = new Redis(redisUrl!);
    });
    after(async () => {
      replica?.child.kill('SIGKILL');
      redis?.disconnect();
      await b?.close();
      await testDb?.drop();
    });

    const startKilledGeneration = async (owner: TestUser = user) => {
      replica = await spawnReplica(testDb.url);
      const conv = await b.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(owner.accessToken),
        payload: { model: 'fake-model' },
      });
      const conversationId = conv.json().id as string;
      const sse = await SseConnection.open(`${replica.url}/api/conversations/${conversationId}/messages`, {
        method: 'POST',
        headers: bearer(owner.accessToken),
        body: { content: 'hi' },
      });
      const start = await sse.waitFor((e) => e.event === 'start');
      await sse.waitFor((e) => e.event === 'delta' && e.data.content === ' How');
      const exited = new Promise((resolve) => replica!.child.once('exit', resolve));
      replica.child.kill('SIGKILL');
      await exited;
      return {
        conversationId,
        generationId: start.data.generation_id as string,
        messageId: start.data.message_id as string,
      };
    };
    const messageRow = (id: string) =>
      b.database.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

    // Issue 19 item 4: cancel is prompt. The dead replica's lease is made to outlive any wait of the cancel
    // (60 s): the cancel can only succeed by learning that nobody listens on that replica's cancel channel.
    it('cancel on another replica finishes it at once as partial with the streamed text, and readers get the end', async () => {
      const { generationId, messageId } = await startKilledGeneration();
      const leaseKey = `colloquy:gen:${generationId}:lease`;
      const owner = await redis.get(leaseKey);
      assert.ok(owner, 'the dead replica still holds its lease');
      await redis.set(leaseKey, owner, 'PX', 60_000);
      const cancelled = await b.inject({
        method: 'POST',
        url: `/api/generations/${generationId}/cancel`,
        headers: bearer(user.accessToken),
      });
      assert.equal(cancelled.statusCode, 200, cancelled.body);
      assert.equal(cancelled.json().status, 'partial');
      assert.equal(cancelled.json().message.content, 'Hello! How');
      const row = await messageRow(messageId);
      assert.equal(row.status, 'partial');
      assert.equal(row.content, 'Hello! How');

      // A reconnection (on the surviving replica) replays the log and ends with the takeover's final event.
      const events = await b.inject({
        method: 'GET',
        url: `/api/generations/${generationId}/events`,
        headers: bearer(user.accessToken),
      });
      assert.equal(events.statusCode, 200);
      const kinds = [...events.body.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
      assert.deepEqual(kinds, ['message', 'start', 'delta', 'delta', 'error']);
      assert.match(events.body, /"code":"cancelled"/);
      const generation = await b.inject({
        method: 'GET',
        url: `/api/generations/${generationId}`,
        headers: bearer(user.accessToken),
      });
      assert.equal(generation.json().error, 'cancelled');
      await redis.del(leaseKey);
    });

    // Issue 19 item 4: the reply finished by takeover is in the ledger once, and the dead replica's budget
    // reservation (in Redis) is settled to it, not left to expire after 15 minutes.
    it('a generation taken over gets one usage row, and its budget reservation is settled to it', async () => {
      const payer = await createUser(b, `takeover-budget-${dialect}@example.com`);
      const put = await b.inject({
        method: 'PUT',
        url: `/api/budgets/user/${payer.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { period: 'day', limit_tokens: 1_000_000 },
      });
      assert.equal(put.statusCode, 204, put.body);
      const { generationId, messageId } = await startKilledGeneration(payer);
      const usageRows = () =>
        b.database.db
          .selectFrom('usage_records')
          .selectAll()
          .where('request_id', '=', generationId)
          .execute();
      const deadline = Date.now() + 15_000;
      let rows = await usageRows();
      for (let i = 0; i < 300 && rows.length === 0 && Date.now() < deadline; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        rows = await usageRows();
      }
      assert.equal((await messageRow(messageId)).status, 'partial');
      // Later scans and reads find it ended: still one row.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      rows = await usageRows();
      assert.equal(rows.length, 1, 'exactly one usage row for the generation');
      const [usage] = rows;
      assert.equal(usage!.status, 'partial');
      assert.equal(usage!.user_id, payer.id);
      assert.ok(usage!.prompt_tokens > 0, 'the prompt is counted');
      assert.ok(usage!.completion_tokens > 0, 'the streamed text "Hello! How" is counted');

      const budget = await b.inject({
        method: 'GET',
        url: `/api/budgets/user/${payer.id}`,
        headers: bearer(TEST_MASTER_KEY),
      });
      assert.equal(budget.statusCode, 200, budget.body);
      const day = budget.json().data.find((d: { period: string }) => d.period === 'day');
      assert.equal(day.reserved_tokens, 0, 'the dead replica’s reservation is gone');
      assert.equal(day.spent_tokens, usage!.prompt_tokens + usage!.completion_tokens, 'spend = ledger');
    });

    it('without anyone asking, a surviving replica finishes it once the lease expires (its periodic scan)', async () => {
      const { messageId } = await startKilledGeneration();
      const deadline = Date.now() + 15_000;
      let row = await messageRow(messageId);
      for (let i = 0; i < 300 && row.status === 'streaming' && Date.now() < deadline; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        row = await messageRow(messageId);
      }
      assert.equal(row.status, 'partial');
      assert.equal(row.content, 'Hello! How');
    });

    it('a new message in the conversation is accepted within seconds, not refused with 409', async () => {
      const { conversationId, messageId } = await startKilledGeneration();
      const deadline = Date.now() + 10_000;
      let res = await b.inject({
        method: 'POST',
        url: `/api/conversations/${conversationId}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: 'are you there?', stream: false },
      });
      // Refused (409) only while the dead replica's lease lasts (3 s).
      for (let i = 0; i < 100 && res.statusCode === 409 && Date.now() < deadline; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        res = await b.inject({
          method: 'POST',
          url: `/api/conversations/${conversationId}/messages`,
          headers: bearer(user.accessToken),
          payload: { content: 'are you there?', stream: false },
        });
      }
      assert.equal(res.statusCode, 201, res.body);
      const row = await messageRow(messageId);
      assert.equal(row.status, 'partial');
      assert.equal(row.content, 'Hello! How');
      assert.equal(res.json().user_message.parent_id, messageId, 'the new message follows the saved reply');
    });
  });
}
