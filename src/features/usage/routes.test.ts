import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  type TestApp,
} from '../../../test/helpers/app.js';
import { DIALECTS } from '../../../test/helpers/databases.js';
import { newId } from '../../core/ids.js';
import { PriceTable } from './prices.js';

const admin = bearer(TEST_MASTER_KEY);

/** The usage API's dates and money (issue 19, item 18). */
for (const dialect of DIALECTS) {
  describe(`usage API dates and amounts (${dialect})`, () => {
    let t: TestApp;
    let userId: string;
    before(async () => {
      t = await startTestApp({ dialect });
      userId = (await createUser(t, 'usage-amounts@example.com')).id;
    });
    after(() => t.close());

    it('refuses a day that is not on the calendar with 400, naming the parameter', async () => {
      for (const [query, param] of [
        ['from=2026-02-31', 'from'],
        ['to=2026-04-31', 'to'],
        ['from=2026-13-01', 'from'],
        ['from=2025-02-29&to=2025-03-01', 'from'],
      ] as const) {
        const res = await t.inject({ method: 'GET', url: `/api/usage?${query}`, headers: admin });
        assertError(res, 400, 'validation_error', param);
      }
      const leap = await t.inject({
        method: 'GET',
        url: '/api/usage?from=2024-02-29&to=2024-03-01',
        headers: admin,
      });
      assert.equal(leap.statusCode, 200, leap.body);
    });

    it('cost_usd carries no float noise, per row and in sums', async () => {
      const now = new Date().toISOString();
      // Three rows whose float sum is 0.00033120000000000035 (the figure in the issue).
      for (const cost of [0.0001104, 0.0001104, 0.0001104]) {
        await t.database.db
          .insertInto('usage_records')
          .values({
            id: newId('use'),
            request_id: newId('req'),
            user_id: userId,
            api_key_id: null,
            model: 'gpt-4o-mini',
            provider: 'openai',
            deployment: 'openai',
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_usd: cost,
            latency_ms: 10,
            ttft_ms: null,
            status: 'ok',
            cached: 0,
            retries: 0,
            fallback: 0,
            created_at: now,
          })
          .execute();
      }
      assert.notEqual(0.0001104 + 0.0001104 + 0.0001104, 0.0003312, 'the sum is noisy in floats');
      for (const groupBy of ['day', 'user', 'model']) {
        const res = await t.inject({
          method: 'GET',
          url: `/api/usage?group_by=${groupBy}&user_id=${userId}`,
          headers: admin,
        });
        assert.equal(res.statusCode, 200, res.body);
        const rows = (res.json() as { data: { cost_usd: number }[] }).data;
        assert.deepEqual(
          rows.map((r) => r.cost_usd),
          [0.0003312],
          groupBy,
        );
        assert.match(res.body, /"cost_usd":0\.0003312[,}]/);
      }
    });

    it('a request’s price is rounded to 1e-10 USD', () => {
      const prices = new PriceTable();
      const cost = prices.cost('gpt-4o-mini', 184, 506);
      assert.equal(cost, Number(cost.toFixed(10)));
      assert.ok(Math.abs(cost - (184 * 0.15 + 506 * 0.6) / 1e6) < 1e-12);
    });
  });
}
