import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { assertError, bearer, createUser, TEST_MASTER_KEY, type TestUser } from '../helpers/app.js';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * Authenticate, then authorise, then read and validate the body (issue 19 items 5 and 24): a request
 * without credentials is answered 401 whatever its body, before the body is read; a plain user on an admin
 * route is answered 403 whatever its body.
 */
type Operation = { security?: unknown[]; 'x-required-role'?: string };
const WRITE = ['post', 'put', 'patch', 'delete'];

describe('authentication before validation', () => {
  let s: ChatStack;
  let operations: { method: string; path: string; op: Operation }[];
  before(async () => {
    s = await startChatStack();
    const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, Operation>>;
    };
    operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ method, path, op })),
    );
  });
  after(() => s?.close());

  const url = (path: string) => path.replace(/\{[^}]+\}/g, 'some-id');
  const manyMessages = (n: number) =>
    JSON.stringify({
      model: 'gpt-4o-mini',
      messages: Array.from({ length: n }, () => ({ role: 'user', content: 'x' })),
    });

  it('`{}` and a 30,000-message body without credentials → 401 on /v1/chat/completions', async () => {
    for (const payload of ['{}', manyMessages(30_000), '{"model":', '[]']) {
      const res = await s.t.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        headers: { 'content-type': 'application/json' },
        payload,
      });
      assertError(res, 401, 'unauthorized');
    }
  });

  it('every authenticated route with an invalid body and no credentials → 401, not 400', async () => {
    const secured = operations.filter(({ method, op }) => op.security && WRITE.includes(method));
    assert.ok(secured.length > 20, `only ${secured.length} authenticated write routes`);
    for (const { method, path } of secured)
      for (const payload of ['{}', '{"bogus":[[[[1]]]]}', 'not json'])
        for (const authorization of [undefined, 'Bearer not-a-credential']) {
          const res = await s.t.inject({
            method: method.toUpperCase() as 'POST',
            url: url(path),
            headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
            payload,
          });
          assert.equal(res.statusCode, 401, `${method} ${path} with ${payload}: ${res.body}`);
        }
  });

  it('a huge body without credentials is answered 401 before it is read, so it is never parsed or validated', async () => {
    const body = Buffer.from(manyMessages(30_000));
    const { port } = new URL(s.url);
    const outcome = await new Promise<{ status: number; sentBytes: number }>((resolve, reject) => {
      let sentBytes = 0;
      const req = http.request({
        host: '127.0.0.1',
        port: Number(port),
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'content-length': body.length },
      });
      const timer = setTimeout(() => {
        req.destroy();
        reject(new Error('no answer within 10 s while the body was withheld'));
      }, 10_000);
      req.on('response', (res) => {
        clearTimeout(timer);
        res.resume();
        resolve({ status: res.statusCode ?? 0, sentBytes });
        req.destroy();
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      // Only the first 64 KiB: the rest is never sent, so an answer proves the body was not waited for.
      const head = body.subarray(0, 64 * 1024);
      sentBytes = head.length;
      req.write(head);
    });
    assert.equal(outcome.status, 401);
    assert.ok(outcome.sentBytes < body.length, 'answered before the whole body was sent');
  });

  it('with credentials, a 30,000-message body is refused by the edge count limit (400), cheaply', async () => {
    const res = await s.t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
      payload: manyMessages(30_000),
    });
    const error = assertError(res, 400, 'invalid_request');
    assert.match(error.message, /array of more than 10,000 items/);
  });
});

describe('authorisation before validation on admin routes', () => {
  let s: ChatStack;
  let user: TestUser;
  let adminRoutes: { method: string; path: string }[];
  before(async () => {
    s = await startChatStack();
    user = await createUser(s.t, 'plain-user@example.com');
    const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, Record<string, Operation>>;
    };
    adminRoutes = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op['x-required-role'] === 'admin')
        .map(([method]) => ({ method, path })),
    );
  });
  after(() => s?.close());

  it('the OpenAPI document marks the admin-only routes', () => {
    const names = adminRoutes.map((r) => `${r.method} ${r.path}`);
    for (const known of ['post /api/users', 'get /api/admin/audit'])
      assert.ok(names.includes(known), `${known} is not marked admin-only: ${names.join(', ')}`);
  });

  it('every admin route, a plain user (JWT or API key) and an invalid body → 403, not 400', async () => {
    assert.ok(adminRoutes.length >= 5, `only ${adminRoutes.length} admin routes`);
    for (const { method, path } of adminRoutes)
      for (const token of [user.accessToken, s.apiKey])
        for (const payload of ['{}', '{"role":"nobody","limit_usd":"many","email":7}', 'not json']) {
          const withBody = method !== 'get' && method !== 'delete';
          const res = await s.t.inject({
            method: method.toUpperCase() as 'POST',
            url: `${path.replace(/\{[^}]+\}/g, 'some-id')}${withBody ? '' : '?limit=-5&from=not-a-date'}`,
            headers: { ...bearer(token), ...(withBody ? { 'content-type': 'application/json' } : {}) },
            ...(withBody ? { payload } : {}),
          });
          assertError(res, 403, 'forbidden');
        }
    // The same requests with the master key reach validation (the routes do validate).
    const post = await s.t.inject({
      method: 'POST',
      url: '/api/users',
      headers: { ...bearer(TEST_MASTER_KEY), 'content-type': 'application/json' },
      payload: '{}',
    });
    assert.equal(post.statusCode, 400);
  });
});
