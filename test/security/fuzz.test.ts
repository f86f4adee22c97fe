import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { SignJWT } from 'jose';
import { bearer, createUser, TEST_MASTER_KEY, TEST_SECRET } from '../helpers/app.js';
import { type ChatStack, sseData, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

/**
 * Security: fuzz of every route of the OpenAPI document (generated + hostile seed bodies: only 4xx, never
 * 500, Object.prototype untouched), smuggled base URLs never reach the network, the auth matrix, cross-user
 * and mass-assignment attempts, login throttling without a user oracle, CORS, and the SSE parser against any
 * split of a stream and random bytes.
 */
const figures = { inputs: 0, requests: 0, leaks: 0 };
const protoKeys = () => Object.getOwnPropertyNames(Object.prototype).sort().join(',');

function deep(n: number): string {
  return `${'['.repeat(n)}${']'.repeat(n)}`;
}

/** A raw upstream: the trap (must never be called), or a scripted byte stream. */
async function rawServer(handler: http.RequestListener) {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('security', () => {
  for (const dialect of DIALECTS) {
    describe(dialect, () => {
      let s: ChatStack;
      let trap: Awaited<ReturnType<typeof rawServer>>;
      let userToken: string;
      let other: { id: string; accessToken: string };
      let otherConversation: string;
      before(async () => {
        trap = await rawServer((_req, res) => res.end('{}'));
        s = await startChatStack({ dialect });
        const login = await s.t.inject({
          method: 'POST',
          url: '/api/auth/login',
          payload: { email: 'chat-user@example.com', password: 'a-long-enough-password' },
        });
        userToken = (login.json() as { access_token: string }).access_token;
        other = await createUser(s.t, 'other-user@example.com');
        const conv = await s.t.inject({
          method: 'POST',
          url: '/api/conversations',
          headers: bearer(other.accessToken),
          payload: { title: 'private' },
        });
        otherConversation = (conv.json() as { id: string }).id;
      });
      after(async () => {
        await s?.close();
        await trap?.close();
        console.log(`# security figures (${dialect}): ${JSON.stringify(figures)}`);
      });

      it('fuzz: every route, generated and hostile bodies: 4xx only, never 500, prototype untouched', async () => {
        const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
          paths: Record<string, Record<string, unknown>>;
        };
        const routes = Object.entries(doc.paths).flatMap(([p, ops]) =>
          Object.keys(ops)
            .filter((m) => ['get', 'post', 'put', 'patch', 'delete'].includes(m))
            .map((m) => ({ method: m.toUpperCase() as 'GET', path: p })),
        );
        assert.ok(routes.length > 20, `only ${routes.length} routes in the OpenAPI document`);
        const before = protoKeys();
        const seeds: unknown[] = [
          JSON.parse('{"__proto__":{"polluted":true,"role":"admin"},"constructor":{"prototype":{"x":1}}}'),
          deep(10_000),
          'x'.repeat(1024 * 1024 + 1),
          { content: '\ud800\udfff\ud800', title: 'a\u0000b\u202e', name: '\u202egnp.exe' },
          '{"max_tokens": 1e309, "temperature": -1e309}',
          { model: 'gpt-4o-mini', max_tokens: -1, messages: [{ role: 'user', content: 'x' }] },
          {
            model: 'gpt-4o-mini',
            messages: Array.from({ length: 100_000 }, () => ({ role: 'user', content: 'x' })),
          },
          {
            model: 'gpt-4o-mini',
            messages: [{ role: 'user', content: 'hi' }],
            base_url: trap.url,
            api_key: 'x',
          },
          { role: 'admin', userId: other.id, ownerId: other.id, user_id: other.id, email: 'x@example.com' },
          null,
          [],
          '',
          'not json',
        ];
        const bodies = fc.oneof(
          fc.constantFrom(...seeds),
          fc.jsonValue({ maxDepth: 4 }),
          fc.dictionary(
            fc.constantFrom(
              'content',
              'model',
              'messages',
              'title',
              'name',
              'role',
              '__proto__',
              'stream',
              'email',
            ),
            fc.jsonValue({ maxDepth: 2 }),
          ),
        );
        const ids = fc.constantFrom(
          'x',
          otherConversation,
          other.id,
          '../../etc/passwd',
          '%00',
          'a'.repeat(300),
        );
        const tokens = fc.constantFrom(userToken, s.apiKey, 'garbage', '');
        await fc.assert(
          fc.asyncProperty(
            fc.constantFrom(...routes),
            bodies,
            ids,
            tokens,
            async (route, body, id, token) => {
              figures.inputs++;
              const url = route.path.replace(/\{[^}]+\}/g, encodeURIComponent(id));
              const payload = typeof body === 'string' ? body : JSON.stringify(body);
              const res = await s.t.inject({
                method: route.method,
                url,
                headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { payload }),
              });
              figures.requests++;
              assert.ok(
                res.statusCode < 500 || [502, 503, 504].includes(res.statusCode),
                `${route.method} ${url} → ${res.statusCode} ${res.body.slice(0, 300)}`,
              );
              // Cross-tenant: the other user's conversation is never readable with this user's credentials.
              if (res.statusCode === 200 && id === otherConversation && route.path.includes('conversations'))
                assert.ok(!res.body.includes('private'), `${route.method} ${url} read another user's data`);
            },
          ),
          { numRuns: 600, seed: 424242, examples: seeds.map((b) => [routes[0]!, b, 'x', userToken]) },
        );
        assert.equal(protoKeys(), before, 'Object.prototype was modified');
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        assert.equal(trap.hits.length, 0, 'a smuggled URL reached the network');
      });

      it('every route with a body, as each seed (proto keys, 10k-deep JSON, limit+1 bytes, …)', async () => {
        const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
          paths: Record<string, Record<string, unknown>>;
        };
        const big = `{"content":"${'x'.repeat(s.t.config.http.bodyLimit + 1)}"}`;
        const bodies = [
          '{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"polluted":1}}}',
          deep(10_000),
          // Issue 18: a valid chat body with 5,000 nested arrays in an unknown field (500 before; 400 now).
          `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0,"x":${deep(5_000)}}`,
          `{"title":"t","content":"c","name":"n","x":${deep(5_000)}}`,
          big,
          '{"content":"\\ud800", "title":"\\u0000\\u202e"}',
          '{"max_tokens":1e309}',
          '{"max_tokens":-5}',
        ];
        for (const [p, ops] of Object.entries(doc.paths))
          for (const m of Object.keys(ops).filter((m) => ['post', 'put', 'patch'].includes(m)))
            for (const payload of bodies) {
              figures.inputs++;
              const res = await s.t.inject({
                method: m.toUpperCase() as 'POST',
                url: p.replace(/\{[^}]+\}/g, otherConversation),
                headers: { ...bearer(userToken), 'content-type': 'application/json' },
                payload,
              });
              assert.ok(res.statusCode < 500, `${m} ${p} → ${res.statusCode} ${res.body.slice(0, 200)}`);
            }
        assert.equal(({} as Record<string, unknown>).isAdmin, undefined);
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
      });

      it('hostile headers: 16 KB+ header and CRLF are refused cleanly', async () => {
        const res = await fetch(`${s.url}/v1/models`, {
          headers: { authorization: `Bearer ${s.apiKey}`, 'x-big': 'a'.repeat(17 * 1024) },
        });
        assert.ok(res.status < 500 || res.status === 431, `${res.status}`);
        // CRLF cannot be sent by fetch; write it raw.
        const raw = await new Promise<string>((resolve) => {
          const { port } = new URL(s.url);
          const socket = net.connect(Number(port), '127.0.0.1', () =>
            socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: b\r\n\r\n'),
          );
          let out = '';
          socket.on('data', (d: Buffer) => {
            out += d.toString();
          });
          socket.on('close', () => resolve(out));
          socket.on('error', () => resolve(out));
          socket.setTimeout(2_000, () => socket.destroy());
        });
        assert.match(raw, /^HTTP\/1\.1 4\d\d/);
      });

      it('smuggled base_url / baseURL / api_base / api_key never reach the network', async () => {
        const before = s.fake.requests.length;
        for (const field of ['base_url', 'baseURL', 'api_base', 'apiBase', 'endpoint'])
          for (const target of [
            trap.url,
            'http://169.254.169.254/latest',
            'http://2130706433/',
            'http://[::1]/',
          ]) {
            figures.requests++;
            const res = await fetch(`${s.url}/v1/chat/completions`, {
              method: 'POST',
              headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
              body: JSON.stringify({
                model: 'gpt-4o-mini',
                messages: [{ role: 'user', content: 'hi' }],
                [field]: target,
                api_key: 'sk-attacker',
              }),
            });
            await res.text();
            assert.ok(res.status < 500, `${field}: ${res.status}`);
          }
        assert.equal(trap.hits.length, 0, 'the trap host was called');
        const forwarded = s.fake.requests.slice(before);
        assert.equal(forwarded.length, 20, 'every request went to the configured upstream');
        for (const r of forwarded) assert.equal(r.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
      });

      it('auth matrix: every forged, expired, revoked or malformed credential is refused', async () => {
        const key = new TextEncoder().encode(TEST_SECRET);
        const base = () =>
          new SignJWT({ role: 'admin', typ: 'access' })
            .setSubject(other.id)
            .setIssuer('colloquy')
            .setAudience('colloquy-api')
            .setIssuedAt();
        const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
        const valid = await base().setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key);
        const [h, p] = valid.split('.');
        const revoked = await s.t.inject({
          method: 'POST',
          url: '/api/keys',
          headers: bearer(userToken),
          payload: { name: 'to revoke' },
        });
        const revokedKey = revoked.json() as { id: string; key: string };
        await s.t.inject({ method: 'DELETE', url: `/api/keys/${revokedKey.id}`, headers: bearer(userToken) });
        const disabled = await createUser(s.t, 'disabled@example.com');
        await s.t.inject({
          method: 'PATCH',
          url: `/api/users/${disabled.id}`,
          headers: bearer(TEST_MASTER_KEY),
          payload: { disabled: true },
        });
        const forged: Record<string, string | undefined> = {
          missing: undefined,
          malformedHeader: 'Bearer',
          garbage: 'not.a.jwt',
          algNone: `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`,
          hs512: await base().setProtectedHeader({ alg: 'HS512' }).setExpirationTime('1h').sign(key),
          expired: await base()
            .setProtectedHeader({ alg: 'HS256' })
            .setExpirationTime(Math.floor(Date.now() / 1000) - 60)
            .sign(key),
          futureNbf: await base()
            .setProtectedHeader({ alg: 'HS256' })
            .setNotBefore('1h')
            .setExpirationTime('2h')
            .sign(key),
          wrongAudience: await base()
            .setProtectedHeader({ alg: 'HS256' })
            .setAudience('other')
            .setExpirationTime('1h')
            .sign(key),
          wrongKey: await base()
            .setProtectedHeader({ alg: 'HS256' })
            .setExpirationTime('1h')
            .sign(new TextEncoder().encode('another-secret-that-is-long-enough-012345')),
          strippedSignature: `${h}.${p}.`,
          disabledUser: disabled.accessToken,
          revokedKey: revokedKey.key,
          malformedKey: `${s.apiKey.slice(0, -3)}zzz`,
        };
        for (const [name, token] of Object.entries(forged)) {
          for (const url of ['/api/me', '/v1/models', '/api/admin/audit']) {
            figures.inputs++;
            const res = await s.t.inject({
              method: 'GET',
              url,
              headers:
                token === undefined
                  ? {}
                  : { authorization: token.startsWith('Bearer') ? token : `Bearer ${token}` },
            });
            assert.ok(
              [401, 403].includes(res.statusCode),
              `${name} on ${url}: ${res.statusCode} ${res.body}`,
            );
          }
        }
        // Reusing a refresh token revokes its whole family.
        const login = await s.t.inject({
          method: 'POST',
          url: '/api/auth/login',
          payload: { email: 'other-user@example.com', password: 'a-long-enough-password' },
        });
        const first = (login.json() as { refresh_token: string }).refresh_token;
        const rotated = await s.t.inject({
          method: 'POST',
          url: '/api/auth/refresh',
          payload: { refresh_token: first },
        });
        assert.equal(rotated.statusCode, 200);
        const second = (rotated.json() as { refresh_token: string }).refresh_token;
        const reuse = await s.t.inject({
          method: 'POST',
          url: '/api/auth/refresh',
          payload: { refresh_token: first },
        });
        assert.equal(reuse.statusCode, 401);
        const family = await s.t.inject({
          method: 'POST',
          url: '/api/auth/refresh',
          payload: { refresh_token: second },
        });
        assert.equal(family.statusCode, 401, 'the family is revoked after a reuse');
      });

      it('mass assignment and cross-user access: no privilege change, no cross-tenant read', async () => {
        const extra = {
          role: 'admin',
          userId: other.id,
          ownerId: other.id,
          user_id: other.id,
          disabled: false,
        };
        const me = await s.t.inject({
          method: 'PATCH',
          url: '/api/me',
          headers: bearer(userToken),
          payload: { display_name: 'me', ...extra },
        });
        assert.ok(me.statusCode < 500);
        const after = await s.t.inject({ method: 'GET', url: '/api/me', headers: bearer(userToken) });
        assert.equal((after.json() as { role: string }).role, 'user');
        const conv = await s.t.inject({
          method: 'POST',
          url: '/api/conversations',
          headers: bearer(userToken),
          payload: { title: 'mine', ...extra },
        });
        if (conv.statusCode === 201) {
          const id = (conv.json() as { id: string }).id;
          const asOther = await s.t.inject({
            method: 'GET',
            url: `/api/conversations/${id}`,
            headers: bearer(other.accessToken),
          });
          assert.equal(asOther.statusCode, 404, 'mass-assigned userId must not hand the row to another user');
        }
        for (const [method, url] of [
          ['GET', `/api/conversations/${otherConversation}`],
          ['GET', `/api/conversations/${otherConversation}/messages`],
          ['PATCH', `/api/conversations/${otherConversation}`],
          ['DELETE', `/api/conversations/${otherConversation}`],
          ['POST', `/api/conversations/${otherConversation}/messages`],
          ['PATCH', `/api/users/${other.id}`],
          ['GET', '/api/admin/audit'],
          ['GET', '/api/users'],
        ] as const) {
          const res = await s.t.inject({
            method,
            url,
            headers: bearer(userToken),
            ...(method === 'GET' || method === 'DELETE'
              ? {}
              : { payload: { content: 'x', title: 'y', ...extra } }),
          });
          assert.ok(
            [400, 403, 404].includes(res.statusCode),
            `${method} ${url}: ${res.statusCode} ${res.body}`,
          );
        }
        const still = await s.t.inject({
          method: 'GET',
          url: `/api/conversations/${otherConversation}`,
          headers: bearer(other.accessToken),
        });
        assert.equal((still.json() as { title: string }).title, 'private');
      });

      it('login: identical answers for unknown and known users, and throttled', async () => {
        // A fresh address each run: with a shared Redis the throttle outlives the process.
        const ip = `10.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
        const attempt = (email: string) =>
          s.t.inject({
            method: 'POST',
            url: '/api/auth/login',
            payload: { email, password: 'wrong-password-123' },
            remoteAddress: ip,
          });
        const known = await attempt('chat-user@example.com');
        const unknown = await attempt('nobody@example.com');
        assert.equal(known.statusCode, unknown.statusCode);
        assert.equal(known.body, unknown.body);
        let throttled = false;
        for (let i = 0; i < 40 && !throttled; i++)
          throttled = (await attempt('chat-user@example.com')).statusCode === 429;
        assert.ok(throttled, 'repeated failed logins are throttled');
      });

      it('audit rows and logs hold no seeded secret', async () => {
        const audit = await s.t.inject({
          method: 'GET',
          url: '/api/admin/audit',
          headers: bearer(TEST_MASTER_KEY),
        });
        assert.equal(audit.statusCode, 200);
        const text = `${audit.body}\n${s.t.logText()}`;
        for (const secret of [
          UPSTREAM_KEY,
          TEST_MASTER_KEY,
          TEST_SECRET,
          s.apiKey,
          'a-long-enough-password',
          userToken,
        ]) {
          if (text.includes(secret)) figures.leaks++;
          assert.ok(!text.includes(secret), `a secret leaked: ${secret.slice(0, 8)}…`);
        }
      });
    });
  }

  describe('CORS', () => {
    it('refuses a foreign origin with credentials', async () => {
      const s = await startChatStack({ env: { ALLOWED_ORIGINS: 'https://app.example.com' } });
      try {
        const foreign = await fetch(`${s.url}/api/me`, {
          method: 'OPTIONS',
          headers: {
            origin: 'https://evil.example.com',
            'access-control-request-method': 'GET',
            'access-control-request-headers': 'authorization',
          },
        });
        await foreign.text();
        assert.notEqual(foreign.headers.get('access-control-allow-origin'), 'https://evil.example.com');
        assert.notEqual(foreign.headers.get('access-control-allow-origin'), '*');
        const ok = await fetch(`${s.url}/api/me`, {
          method: 'OPTIONS',
          headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' },
        });
        await ok.text();
        assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example.com');
      } finally {
        await s.close();
      }
    });
  });

  describe('SSE parser', () => {
    const words = ['Hello ', 'wörld ', '🙂 ', 'split ', 'anywhere.'];
    const canonical = Buffer.from(
      `${words
        .map(
          (w, i) =>
            `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n${i % 2 ? '\r\n' : '\n'}`,
        )
        .join(
          '',
        )}: a comment\n\ndata: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 0, model: 'gpt-4o-mini', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`,
    );
    let pieces: Buffer[] = [];
    let raw: Awaited<ReturnType<typeof rawServer>>;
    let s: ChatStack;
    before(async () => {
      raw = await rawServer(async (req, res) => {
        for await (const _ of req);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const piece of pieces) {
          res.write(piece);
          await new Promise((r) => setImmediate(r));
        }
        res.end();
      });
      s = await startChatStack({
        routing: () => ({
          providers: [{ name: 'raw', type: 'openai', base_url: `${raw.url}/v1` }],
          models: [{ name: 'raw-model', deployments: [{ provider: 'raw', model: 'gpt-4o-mini' }] }],
          router: { retries: 0 },
        }),
      });
    });
    after(async () => {
      await s?.close();
      await raw?.close();
    });
    const ask = async () => {
      const res = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'raw-model',
          stream: true,
          messages: [{ role: 'user', content: 'hi' }],
        }),
      });
      return { status: res.status, text: await res.text() };
    };

    it('reassembles any split of a stream identically', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.integer({ min: 1, max: canonical.length - 1 }), { maxLength: 40 }),
          async (cuts) => {
            figures.inputs++;
            const points = [0, ...cuts.sort((a, b) => a - b), canonical.length];
            pieces = points.slice(1).map((end, i) => canonical.subarray(points[i]!, end));
            const { status, text } = await ask();
            assert.equal(status, 200);
            const data = sseData(text);
            assert.equal(data.at(-1), '[DONE]');
            const content = data
              .slice(0, -1)
              .map(
                (d) =>
                  (JSON.parse(d) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta
                    .content ?? '',
              )
              .join('');
            assert.equal(content, words.join(''));
          },
        ),
        { numRuns: 60, seed: 7 },
      );
    });

    it('random upstream bytes never crash the process', async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), fc.boolean(), async (bytes, prefix) => {
          figures.inputs++;
          pieces = [Buffer.concat([Buffer.from(prefix ? 'data: ' : ''), Buffer.from(bytes)])];
          const { status, text } = await ask();
          assert.ok(status < 500 || [502, 503, 504].includes(status), `${status} ${text}`);
          if (status === 200) assert.equal(sseData(text).at(-1), '[DONE]');
        }),
        { numRuns: 60, seed: 11 },
      );
      const live = await fetch(`${s.url}/health/live`);
      assert.equal(live.status, 200);
    });
  });
});
