import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import { parseDatabaseUrl } from '../../config/database-url.js';
import { type DatabaseHandle, openDatabase } from '../../db/database.js';
import { migrateUp } from '../../db/migrator.js';
import { createMetrics } from '../../metrics/registry.js';
import { rollup, usageReport, utcDay } from '../limits/rollups.js';
import { PriceTable } from './prices.js';
import { type UsageEvent, UsageRecorder } from './store.js';

const uid = () => `req_${randomBytes(6).toString('hex')}`;
const quiet = pino({ level: 'silent' });

const event = (overrides: Partial<UsageEvent>): UsageEvent => ({
  requestId: uid(),
  userId: null,
  apiKeyId: null,
  model: 'claude-x',
  route: {
    requestedModel: overrides.model ?? 'claude-x',
    provider: 'anthropic',
    deployment: 'anthropic/claude-x',
    upstreamModel: 'claude-x',
    attempts: 1,
    fallback: false,
  },
  usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
  latencyMs: 3,
  status: 'ok',
  ...overrides,
});

// Issue 20: every ledger row names the client protocol it came in by; usage groups and filters by it, from
// the live ledger (today) and from the daily roll-up (past days) alike.
for (const dialect of DIALECTS) {
  describe(`usage per client protocol (${dialect})`, () => {
    let testDb: TestDatabase;
    let database: DatabaseHandle;

    before(async () => {
      testDb = await createTestDatabase(dialect);
      database = openDatabase({
        ...parseDatabaseUrl(testDb.url),
        poolSize: 4,
        poolTimeoutMs: 5_000,
        busyTimeoutMs: 5_000,
      });
      await migrateUp(database.db);
    });
    after(async () => {
      await database.close().catch(() => {});
      await testDb.drop();
    });

    it('records the protocol (chat_completions when unsaid) and labels the metrics with it', async () => {
      const metrics = createMetrics({ track: 'stable' });
      const recorder = new UsageRecorder(database.db, new PriceTable(), quiet, metrics);
      const messages = event({ protocol: 'messages' });
      const chat = event({});
      await Promise.all([recorder.record(messages), recorder.record(chat)]);
      const rows = await database.db
        .selectFrom('usage_records')
        .select(['request_id', 'protocol'])
        .where('request_id', 'in', [messages.requestId, chat.requestId])
        .execute();
      const byId = new Map(rows.map((r) => [r.request_id, r.protocol]));
      assert.equal(byId.get(messages.requestId), 'messages');
      assert.equal(byId.get(chat.requestId), 'chat_completions');
      const text = await metrics.registry.metrics();
      assert.match(text, /colloquy_llm_requests_total\{[^}]*protocol="messages"[^}]*\} 1/);
      assert.match(text, /colloquy_llm_request_duration_seconds_count\{[^}]*protocol="chat_completions"/);
    });

    it('groups and filters usage by protocol, today live and past days rolled up', async () => {
      const recorder = new UsageRecorder(database.db, new PriceTable(), quiet);
      // A model of its own isolates this test's rows.
      const model = `m_${randomBytes(6).toString('hex')}`;
      await Promise.all([
        recorder.record(event({ model, protocol: 'messages' })),
        recorder.record(event({ model, protocol: 'messages' })),
        recorder.record(event({ model, protocol: 'chat_completions' })),
      ]);
      const today = utcDay(new Date());
      const live = await usageReport(database.db, { from: today, to: today, groupBy: 'protocol', model });
      assert.deepEqual(live.map((r) => [r.key, r.requests]).sort(), [
        ['chat_completions', 1],
        ['messages', 2],
      ]);
      // Tomorrow, today is read from the roll-up: the protocol must survive it.
      await rollup(database.db, today);
      const tomorrow = new Date(Date.now() + 86_400_000);
      const rolled = await usageReport(database.db, {
        from: today,
        to: today,
        groupBy: 'model',
        protocol: 'messages',
        model,
        now: tomorrow,
      });
      assert.deepEqual(
        rolled.map((r) => [r.key, r.requests]),
        [[model, 2]],
      );
    });
  });
}
