import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyInstance } from 'fastify';
import { CONSOLE_CSP, consolePlugin } from '../../src/plugins/console.js';
import { startTestApp } from '../helpers/app.js';

const SNAPSHOT = fileURLToPath(new URL('../../web/src/api/openapi.json', import.meta.url));

async function appWith(root: string): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(consolePlugin, { root });
  app.get('/api/ping', async () => ({ ok: true }));
  await app.ready();
  return app;
}

describe('console plugin', () => {
  let dir: string;
  let app: FastifyInstance;
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-console-'));
    mkdirSync(path.join(dir, 'assets'));
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>console</title>');
    writeFileSync(path.join(dir, 'assets', 'index-abc123.js'), 'console.log(1)');
    writeFileSync(path.join(dir, 'assets', 'index-abc123.css'), 'body{}');
    app = await appWith(dir);
  });
  after(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves index.html at /console and /console/ uncached, with the strict CSP', async () => {
    for (const url of ['/console', '/console/']) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 200, url);
      assert.match(res.headers['content-type'] as string, /^text\/html/);
      assert.equal(res.headers['cache-control'], 'no-cache');
      assert.equal(res.headers['content-security-policy'], CONSOLE_CSP);
      assert.match(res.body, /<title>console<\/title>/);
    }
    const csp = CONSOLE_CSP;
    for (const directive of [
      "default-src 'self'",
      "connect-src 'self'",
      "img-src 'self' data: blob:",
      "style-src 'self'",
      "script-src 'self'",
      "frame-ancestors 'none'",
    ])
      assert.ok(csp.includes(directive), directive);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  });

  it('serves hashed assets with a one-year immutable cache', async () => {
    const js = await app.inject({ url: '/console/assets/index-abc123.js' });
    assert.equal(js.statusCode, 200);
    assert.match(js.headers['content-type'] as string, /javascript/);
    assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(js.headers['content-security-policy'], CONSOLE_CSP);
    assert.equal(js.body, 'console.log(1)');
    const css = await app.inject({ url: '/console/assets/index-abc123.css' });
    assert.equal(css.statusCode, 200);
    assert.match(css.headers['content-type'] as string, /text\/css/);
  });

  it('answers client-side routes with index.html, missing files with 404', async () => {
    for (const url of ['/console/chat', '/console/usage/2026', '/console/admin/users?x=1']) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 200, url);
      assert.equal(res.headers['cache-control'], 'no-cache');
      assert.match(res.body, /<title>console<\/title>/);
    }
    for (const url of ['/console/assets/missing.js', '/console/favicon.ico']) {
      const res = await app.inject({ url });
      assert.equal(res.statusCode, 404, url);
    }
    const traversal = await app.inject({ url: '/console/../package.json' });
    assert.notEqual(traversal.body.includes('"name"'), true);
  });

  it('sets the CSP on console responses only', async () => {
    const res = await app.inject({ url: '/api/ping' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-security-policy'], undefined);
  });

  it('answers 503 with how to build when web/dist is missing', async () => {
    const empty = await appWith(path.join(dir, 'nothing-here'));
    try {
      for (const url of ['/console', '/console/chat']) {
        const res = await empty.inject({ url });
        assert.equal(res.statusCode, 503);
        const body = res.json() as { error: { code: string; message: string } };
        assert.equal(body.error.code, 'console_not_built');
        assert.match(body.error.message, /npm run build:console/);
      }
    } finally {
      await empty.close();
    }
  });
});

describe('console in the application', () => {
  it('is registered, and its OpenAPI snapshot matches the live /openapi.json', async (t) => {
    const test = await startTestApp();
    t.after(() => test.close());
    const page = await test.inject({ url: '/console' });
    // 200 when web/dist is built (npm test builds it), 503 otherwise: never a 404.
    assert.ok([200, 503].includes(page.statusCode), String(page.statusCode));
    assert.equal(page.headers['content-security-policy'], CONSOLE_CSP);
    const api = await test.inject({ url: '/health/live' });
    assert.equal(api.headers['content-security-policy'], undefined);

    const live = (await test.inject({ url: '/openapi.json' })).json() as Record<string, unknown>;
    if (process.env.UPDATE_OPENAPI_SNAPSHOT === '1')
      writeFileSync(SNAPSHOT, `${JSON.stringify(live, null, 2)}\n`);
    const snapshot = JSON.parse(readFileSync(SNAPSHOT, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(
      { paths: snapshot.paths, components: snapshot.components },
      { paths: live.paths, components: live.components },
      'web/src/api/openapi.json is stale: run UPDATE_OPENAPI_SNAPSHOT=1 node scripts/run-tests.mjs test/console/plugin',
    );
  });
});
