import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.js';
import { startTestApp } from '../helpers/app.js';

const SECRET = 'x'.repeat(40);

describe('ENABLE_DOCS', () => {
  it('is off by default in production and on elsewhere; the variable wins', () => {
    const load = (env: Record<string, string>) => loadConfig(env, { dotenvDir: null }).http.enableDocs;
    assert.equal(load({ COLLOQUY_ENV: 'production', SECRET_KEY: SECRET }), false);
    assert.equal(load({ COLLOQUY_ENV: 'production', SECRET_KEY: SECRET, ENABLE_DOCS: 'true' }), true);
    assert.equal(load({ COLLOQUY_ENV: 'staging', SECRET_KEY: SECRET }), true);
    assert.equal(load({}), true);
  });

  it('off: /docs and /openapi.json answer 404 like any unknown route, the API still works', async (t) => {
    const app = await startTestApp({ env: { ENABLE_DOCS: 'false' } });
    t.after(() => app.close());
    for (const url of ['/openapi.json', '/docs', '/docs/json']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 404, url);
      assert.equal(res.json().error.code, 'route_not_found', url);
    }
    assert.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    // The document is still built: the console's snapshot test and tooling read it in-process.
    assert.ok(Object.keys((app.app.swagger() as { paths: object }).paths).length > 10);
  });
});

describe('ALLOWED_HOSTS', () => {
  it('answers only the listed hosts (and subdomains of a *. entry); others get 400 host_not_allowed', async (t) => {
    const app = await startTestApp({ env: { ALLOWED_HOSTS: 'api.example.com, *.colloquy.test' } });
    t.after(() => app.close());
    const get = (host: string, url = '/v1/models') => app.inject({ method: 'GET', url, headers: { host } });

    for (const host of ['api.example.com', 'API.Example.com:8443', 'eu.colloquy.test', 'a.b.colloquy.test']) {
      const res = await get(host);
      assert.equal(res.statusCode, 401, `${host}: reaches the route (which wants credentials)`);
    }
    for (const host of ['evil.example', 'colloquy.test', 'api.example.com.evil.example', 'xcolloquy.test']) {
      const res = await get(host);
      assert.equal(res.statusCode, 400, host);
      assert.equal(res.json().error.code, 'host_not_allowed', host);
      assert.equal(res.json().error.type, 'invalid_request_error');
    }
    // Probes and scrapers address a pod by its IP.
    assert.equal((await get('10.1.2.3:8000', '/health/live')).statusCode, 200);
  });

  it('unset: every Host is answered', async (t) => {
    const app = await startTestApp();
    t.after(() => app.close());
    const res = await app.inject({ method: 'GET', url: '/health', headers: { host: 'anything.example' } });
    assert.equal(res.statusCode, 200);
  });
});
