import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertError, bearer, startTestApp } from '../helpers/app.js';

/**
 * In production /metrics is never open (issue 19, item 23): without METRICS_TOKEN it answers 403 and the start
 * log says why; with it, only the bearer token reads the figures. Outside production it stays optional.
 */
const production = (env: Record<string, string> = {}) => ({
  COLLOQUY_ENV: 'production',
  HTTPS_ONLY: 'false',
  DEMO_MODEL_ENABLED: 'false',
  ...env,
});

describe('/metrics in production', () => {
  it('without METRICS_TOKEN: 403 with the reason, and a warning at start', async () => {
    const t = await startTestApp({ env: production() });
    try {
      const res = await t.inject({ method: 'GET', url: '/metrics' });
      const error = assertError(res, 403, 'forbidden');
      assert.match(error.message, /METRICS_TOKEN/);
      assert.doesNotMatch(res.body, /colloquy_http/);
      const warning = t.logLines().find((l) => /METRICS_TOKEN is not set/.test(String(l.msg)));
      assert.ok(warning, t.logText());
      assert.equal(warning.level, 40);
    } finally {
      await t.close();
    }
  });

  it('with METRICS_TOKEN: only the bearer token reads them', async () => {
    const t = await startTestApp({ env: production({ METRICS_TOKEN: 'scrape-token-0123456789abcdef' }) });
    try {
      assertError(await t.inject({ method: 'GET', url: '/metrics' }), 401, 'unauthorized');
      const ok = await t.inject({
        method: 'GET',
        url: '/metrics',
        headers: bearer('scrape-token-0123456789abcdef'),
      });
      assert.equal(ok.statusCode, 200);
      assert.match(ok.body, /colloquy_http_requests_in_flight/);
      assert.ok(!t.logText().includes('METRICS_TOKEN is not set'));
    } finally {
      await t.close();
    }
  });

  it('outside production the token stays optional', async () => {
    const t = await startTestApp();
    try {
      assert.equal((await t.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
    } finally {
      await t.close();
    }
  });
});
