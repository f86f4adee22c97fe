import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { VERSION } from '../../src/version.js';
import { bearer, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';

/** The value of the sample of `name` whose labels include all of `labels` (label order does not matter). */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_:]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('metrics', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { DEMO_WORD_DELAY_MS: '0' } });
  });
  after(() => t.close());

  it('serves Prometheus text with HTTP, LLM, process and build metrics, all labelled with the track', async () => {
    await t.inject({ method: 'GET', url: '/health' });
    const chat = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: bearer(TEST_MASTER_KEY),
      payload: { model: 'demo', messages: [{ role: 'user', content: 'hi' }] },
    });
    assert.equal(chat.statusCode, 200, chat.body);
    // A database read (the chat's ledger and audit rows are written in batches, a few ms later).
    await t.inject({ method: 'GET', url: '/api/admin/audit', headers: bearer(TEST_MASTER_KEY) });
    const res = await t.inject({ method: 'GET', url: '/metrics' });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/plain/);
    const text = res.body;
    const stable = { track: 'stable' };
    assert.equal(
      sample(text, 'colloquy_http_request_duration_seconds_count', {
        ...stable,
        route: '/health',
        method: 'GET',
        status_code: '200',
      }),
      1,
    );
    assert.equal(
      sample(text, 'colloquy_llm_requests_total', {
        ...stable,
        provider: 'demo',
        model: 'demo',
        status: 'ok',
        cached: 'false',
      }),
      1,
    );
    assert.ok(
      sample(text, 'colloquy_llm_tokens_total', { ...stable, provider: 'demo', type: 'completion' })! > 0,
    );
    assert.equal(sample(text, 'colloquy_build_info', { ...stable, version: VERSION }), 1);
    assert.ok(
      sample(text, 'colloquy_db_query_duration_seconds_count', { ...stable, dialect: 'sqlite' })! > 0,
    );
    assert.match(text, /nodejs_eventloop_lag_seconds/);
    assert.match(text, /process_resident_memory_bytes/);
  });

  it('never labels by raw path or user: an unknown path counts as unmatched', async () => {
    await t.inject({ method: 'GET', url: '/no/such/path/usr_123' });
    const text = (await t.inject({ method: 'GET', url: '/metrics' })).body;
    assert.doesNotMatch(text, /usr_123/);
    assert.equal(
      sample(text, 'colloquy_http_request_duration_seconds_count', {
        route: 'unmatched',
        status_code: '404',
      }),
      1,
    );
  });
});

describe('metrics token and canary track', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { METRICS_TOKEN: 'scrape-token-123456', COLLOQUY_TRACK: 'canary' } });
  });
  after(() => t.close());

  it('requires the token when METRICS_TOKEN is set', async () => {
    assert.equal((await t.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
    assert.equal(
      (await t.inject({ method: 'GET', url: '/metrics', headers: bearer('wrong') })).statusCode,
      401,
    );
    const ok = await t.inject({ method: 'GET', url: '/metrics', headers: bearer('scrape-token-123456') });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.body, /track="canary"/);
  });
});

describe('security headers and CORS', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { ALLOWED_ORIGINS: 'https://app.example.com', HTTPS_ONLY: 'true' } });
  });
  after(() => t.close());

  it('sends nosniff, frame denial and HSTS (HTTPS_ONLY), on answers and on errors alike', async () => {
    for (const url of ['/health', '/no-such-route']) {
      const res = await t.inject({ method: 'GET', url });
      assert.equal(res.headers['x-content-type-options'], 'nosniff', url);
      assert.equal(res.headers['x-frame-options'], 'DENY', url);
      assert.equal(res.headers['referrer-policy'], 'no-referrer', url);
      assert.equal(res.headers['cross-origin-opener-policy'], 'same-origin', url);
      assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains', url);
    }
  });

  it('sends them, with CORS and the request id, on streamed (SSE) answers too', async () => {
    const res = await t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(TEST_MASTER_KEY), origin: 'https://app.example.com', 'x-request-id': 'req-sse-1' },
      payload: { model: 'demo', stream: true, messages: [{ role: 'user', content: 'hello' }] },
    });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/event-stream/);
    assert.match(res.body, /data: \[DONE\]/);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(res.headers['x-request-id'], 'req-sse-1');
  });

  it('allows a listed origin with credentials and refuses a foreign one', async () => {
    const preflight = (origin: string) =>
      t.inject({
        method: 'OPTIONS',
        url: '/api/me',
        headers: {
          origin,
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      });
    const allowed = await preflight('https://app.example.com');
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(allowed.headers['access-control-allow-credentials'], 'true');
    const foreign = await preflight('https://evil.example.net');
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    const simple = await t.inject({
      method: 'GET',
      url: '/health',
      headers: { origin: 'https://evil.example.net' },
    });
    assert.equal(simple.headers['access-control-allow-origin'], undefined);
    // Credentials are allowed only beside an allowed origin, never on every answer.
    for (const res of [foreign, simple])
      assert.equal(res.headers['access-control-allow-credentials'], undefined);
    const none = await t.inject({ method: 'GET', url: '/health' });
    assert.equal(none.headers['access-control-allow-credentials'], undefined);
    const listed = await t.inject({
      method: 'GET',
      url: '/health',
      headers: { origin: 'https://app.example.com' },
    });
    assert.equal(listed.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(listed.headers['access-control-allow-credentials'], 'true');
    assert.match(String(listed.headers.vary), /origin/i);
    assert.match(String(simple.headers.vary), /origin/i, 'caches keep the answers per origin');
  });

  it('omits HSTS unless HTTPS_ONLY', async () => {
    const plain = await startTestApp();
    try {
      const res = await plain.inject({ method: 'GET', url: '/health' });
      assert.equal(res.headers['strict-transport-security'], undefined);
    } finally {
      await plain.close();
    }
  });
});

describe('body size limit', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp({ env: { MAX_BODY_SIZE: '2048' } });
  });
  after(() => t.close());

  it('refuses a body over MAX_BODY_SIZE with 413 and accepts one under it', async () => {
    const big = await t.inject({
      method: 'POST',
      url: '/api/auth/login',
      payload: { email: 'a@b.co', password: 'x'.repeat(3000) },
    });
    assert.equal(big.statusCode, 413);
    assert.equal(big.json().error.code, 'payload_too_large');
    const small = await t.inject({
      method: 'POST',
      url: '/api/auth/login',
      payload: { email: 'a@b.co', password: 'x' },
    });
    assert.equal(small.statusCode, 401);
  });
});

describe('draining', () => {
  it('keeps serving but closes each connection, and fails readiness, while shutting down', async () => {
    let draining = false;
    const t = await startTestApp({ isDraining: () => draining });
    try {
      const before = await t.inject({ method: 'GET', url: '/api/me' });
      assert.equal(before.statusCode, 401);
      assert.notEqual(before.headers.connection, 'close');
      draining = true;
      const during = await t.inject({ method: 'GET', url: '/api/me' });
      assert.equal(during.statusCode, 401, 'still answered normally');
      assert.equal(during.headers.connection, 'close');
      const ready = await t.inject({ method: 'GET', url: '/health/ready' });
      assert.equal(ready.statusCode, 503);
      assert.ok(ready.json().failing.includes('lifecycle'));
      assert.equal((await t.inject({ method: 'GET', url: '/health/live' })).statusCode, 200);
    } finally {
      await t.close();
    }
  });
});

describe('configuration refusals in production', () => {
  it('refuses CORS "*" and the demo model in production', async () => {
    const { loadConfig, ConfigError } = await import('../../src/config/load-config.js');
    assert.throws(
      () =>
        loadConfig(
          {
            COLLOQUY_ENV: 'production',
            SECRET_KEY: 'z'.repeat(40),
            ALLOWED_ORIGINS: '*',
            DEMO_MODEL_ENABLED: 'true',
          },
          { dotenvDir: null },
        ),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.problems.some((p) => p.startsWith('ALLOWED_ORIGINS:')) &&
        err.problems.some((p) => p.startsWith('DEMO_MODEL_ENABLED:')),
    );
  });
});
