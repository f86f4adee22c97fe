import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { firstStatementDeadlocks } from '../../../test/helpers/deadlock.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { type DatabaseHandle, openDatabase } from '../../db/database.js';
import { migrateUp } from '../../db/migrator.js';
import { PriceTable } from './prices.js';
import { type UsageEvent, UsageRecorder } from './store.js';

const uid = () => `req_${randomBytes(6).toString('hex')}`;
const quiet = pino({ level: 'silent' });

const event = (requestId: string, overrides: Partial<UsageEvent> = {}): UsageEvent => ({
  requestId,
  userId: null,
  apiKeyId: null,
  model: 'gpt-4o-mini',
  route: {
    requestedModel: 'gpt-4o-mini',
    provider: 'openai',
    deployment: 'openai',
    upstreamModel: 'gpt-4o-mini',
    attempts: 1,
    fallback: false,
  },
  usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  latencyMs: 12.4,
  status: 'ok',
  ...overrides,
});

for (const dialect of DIALECTS) {
  describe(`usage ledger batching (${dialect})`, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;
    let statements = 0;

    const open = () => {
      const handle = openDatabase({
        ...parseDatabaseUrl(testDb.url),
        poolSize: 4,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
      handle.observeQueries(() => statements++);
      return handle;
    };
    const rows = (ids: string[]) =>
      database.db
        .selectFrom('usage_records')
        .select(['request_id', 'prompt_tokens', 'cost_usd', 'latency_ms'])
        .where('request_id', 'in', ids)
        .execute();

    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = open();
      await migrateUp(database.db);
    });
    after(async () => {
      await database.close().catch(() => {});
      await testDb.drop();
    });

    it('writes requests recorded together in a few statements, every row intact', async () => {
      const recorder = new UsageRecorder(database.db, new PriceTable(), quiet);
      const ids = Array.from({ length: 150 }, uid);
      statements = 0;
      await Promise.all(ids.map((id) => recorder.record(event(id))));
      assert.ok(statements <= 3, `${statements} statements for 150 rows`);
      const written = await rows(ids);
      assert.equal(written.length, 150);
      assert.ok(written.every((r) => r.prompt_tokens === 10 && r.latency_ms === 12 && r.cost_usd > 0));
    });

    it("a row recorded 'soon' is written at once; others wait to share a batch", async () => {
      // The batch waits far longer than any loaded machine takes to write the 'soon' row, so the check below
      // sees the order of the two writes, not a race against 50 ms.
      const batched = new UsageRecorder(database.db, new PriceTable(), quiet, undefined, undefined, 600_000);
      const soon = new UsageRecorder(database.db, new PriceTable(), quiet);
      const [waits, now] = [uid(), uid()];
      const first = await Promise.race([
        batched.record(event(waits)).then(() => 'batched'),
        soon.record(event(now), 'soon').then(() => 'soon'),
      ]);
      assert.equal(first, 'soon');
      assert.deepEqual(
        (await rows([waits, now])).map((r) => r.request_id),
        [now],
      );
      await batched.close();
      assert.equal((await rows([waits])).length, 1);
    });

    it('close() writes the rows still queued: a graceful stop loses none', async () => {
      const recorder = new UsageRecorder(database.db, new PriceTable(), quiet);
      const ids = Array.from({ length: 20 }, uid);
      // Fire and forget, as the /v1 routes do; the process then shuts down.
      for (const id of ids) void recorder.record(event(id));
      await recorder.close();
      // A request finishing after close (a stream ended by the drain) is written at once.
      const late = uid();
      await recorder.record(event(late));
      await database.close();
      database = open();
      assert.equal((await rows([...ids, late])).length, 21);
    });

    it('records a replayed request id once, without losing the rest of its batch', async () => {
      const recorder = new UsageRecorder(database.db, new PriceTable(), quiet);
      const first = uid();
      await recorder.record(event(first));
      const others = [uid(), uid()];
      await Promise.all([
        recorder.record(event(others[0]!)),
        recorder.record(
          event(first, { usage: { prompt_tokens: 999, completion_tokens: 0, total_tokens: 999 } }),
        ),
        recorder.record(event(others[1]!)),
      ]);
      const written = await rows([first, ...others]);
      assert.equal(written.length, 3);
      assert.equal(written.find((r) => r.request_id === first)?.prompt_tokens, 10, 'the first record stays');
    });

    it('a row the database refuses is logged; the rows batched with it are written', async () => {
      const logged: unknown[] = [];
      const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(JSON.parse(line)) });
      const recorder = new UsageRecorder(database.db, new PriceTable(), logger);
      const good = [uid(), uid()];
      await Promise.all([
        recorder.record(event(good[0]!)),
        // status is NOT NULL: this row cannot be written on either database.
        recorder.record(event(uid(), { status: null as unknown as string })),
        recorder.record(event(good[1]!)),
      ]);
      assert.equal((await rows(good)).length, 2);
      assert.equal(logged.length, 1);
      assert.match(JSON.stringify(logged[0]), /failed to record usage/);
    });

    it('a batch the database rolls back (deadlock) is retried, its rows written', async () => {
      const logged: { msg: string }[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => logged.push(JSON.parse(line)) });
      const deadlocking = firstStatementDeadlocks(database.db);
      const recorder = new UsageRecorder(deadlocking.db, new PriceTable(), logger);
      const ids = [uid(), uid()];
      await Promise.all(ids.map((id) => recorder.record(event(id))));
      assert.equal(
        (await rows(ids)).length,
        2,
        `both rows written on the second try: ${JSON.stringify(logged)}`,
      );
      assert.equal(deadlocking.statements(), 2);
      assert.deepEqual(
        logged.map((l) => l.msg),
        ['usage batch rolled back by the database: retrying it'],
      );
    });

    it('while the database fails, a batch is given up in one log line, and record() still resolves', async () => {
      const logged: { msg: string; requestIds?: string[] }[] = [];
      const logger = pino({ level: 'error' }, { write: (line: string) => logged.push(JSON.parse(line)) });
      // A database without the ledger table fails every insert, whatever the row.
      const emptyDb = await createTestDatabase(dialect);
      const empty = openDatabase({
        ...parseDatabaseUrl(emptyDb.url),
        poolSize: 2,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
      try {
        const recorder = new UsageRecorder(empty.db, new PriceTable(), logger);
        const ids = Array.from({ length: 5 }, uid);
        await Promise.all(ids.map((id) => recorder.record(event(id))));
        assert.equal(logged.length, 1, JSON.stringify(logged));
        assert.match(logged[0]!.msg, /failed to record usage for 5 request/);
        assert.deepEqual(logged[0]!.requestIds, ids);
      } finally {
        await empty.close().catch(() => {});
        await emptyDb.drop();
      }
    });
  });
}
