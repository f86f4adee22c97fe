import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { withGuardrailEvents } from '../../src/features/guardrails/events.js';
import { bearer, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are inspected loosely
type Json = Record<string, any>;

/**
 * The crisis referral report counts per day of TIMEZONE, like budgets and usage: with Asia/Shanghai (UTC+8)
 * a referral at 17:00 UTC is the next day's, and "the last 30 days" end at the server's today there. The
 * server's clock is injected (2026-03-10 20:00 UTC, already 2026-03-11 04:00 in Shanghai).
 */
describe('crisis referrals per day of TIMEZONE', () => {
  let t: TestApp;
  const now = Date.parse('2026-03-10T20:00:00Z');
  before(async () => {
    t = await startTestApp({ env: { TIMEZONE: 'Asia/Shanghai' }, now: () => now });
    const at = [
      '2026-03-10T17:00:00.000Z', // 2026-03-11 01:00 in Shanghai
      '2026-03-10T15:00:00.000Z', // 2026-03-10 23:00
      '2026-02-09T16:30:00.000Z', // 2026-02-10 00:30: the first of the last 30 days there
      '2026-02-09T15:30:00.000Z', // 2026-02-09 23:30: a day too early
    ];
    await withGuardrailEvents(t.database.db)
      .insertInto('guardrail_events')
      .values(
        at.map((created_at, i) => ({
          id: `gre_tz${i}`,
          request_id: `req_tz${i}`,
          guardrail: 'crisis',
          stage: 'input',
          action: 'refer',
          category: 'suicide',
          created_at,
        })),
      )
      .execute();
  });
  after(async () => {
    await t?.close();
  });

  const report = async (query: string) => {
    const res = await t.inject({
      method: 'GET',
      url: `/api/guardrails/referrals${query}`,
      headers: bearer(TEST_MASTER_KEY),
    });
    return { status: res.statusCode, body: res.json() as Json };
  };

  it('the last 30 days end at the server’s today in its zone, and name the zone', async () => {
    const { status, body } = await report('?days=30');
    assert.equal(status, 200);
    assert.equal(body.time_zone, 'Asia/Shanghai');
    assert.deepEqual(body.data, [
      { day: '2026-02-10', category: 'suicide', referrals: 1 },
      { day: '2026-03-10', category: 'suicide', referrals: 1 },
      { day: '2026-03-11', category: 'suicide', referrals: 1 },
    ]);
    assert.equal(body.total, 3);
  });

  it('from and to are days of the zone', async () => {
    const { body } = await report('?from=2026-03-11&to=2026-03-11');
    assert.deepEqual(body.data, [{ day: '2026-03-11', category: 'suicide', referrals: 1 }]);
    const all = await report('');
    assert.equal(all.body.total, 4);
  });

  it('refuses days together with from, and a day that is not one', async () => {
    const both = await report('?days=7&from=2026-03-01');
    assert.equal(both.status, 400);
    assert.equal(both.body.error.param, 'days');
    const bad = await report('?from=2026-02-30');
    assert.equal(bad.status, 400);
  });
});
