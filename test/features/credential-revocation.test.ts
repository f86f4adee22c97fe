import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FakeGateway, Gate } from '../../src/features/conversations/testing/fake-gateway.js';
import { SseConnection } from '../../src/features/conversations/testing/sse-client.js';
import { connectWs } from '../../src/features/conversations/testing/ws-client.js';
import { bearer, createUser, startTestApp, TEST_MASTER_KEY, type TestApp } from '../helpers/app.js';
import { createTestDatabase, DIALECTS, markSuiteRan, type TestDatabase } from '../helpers/databases.js';

const redisUrl = process.env.TEST_REDIS_URL;
/** The close code of a socket whose credential stopped being valid (documented in the README). */
const CREDENTIALS_CLOSE_CODE = 4401;

/** Bounded wait for a condition (count and deadline). */
async function eventually(probe: () => boolean | Promise<boolean>, what: string, timeoutMs = 8_000) {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000; i++) {
    if (await probe()) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out: ${what}`);
}

/** A /v1 stream read as text until it ends. */
async function openV1Stream(url: string, key: string) {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...bearer(key) },
    body: JSON.stringify({ model: 'fake-model', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(res.status, 200);
  return { text: res.text() };
}

// Issue 19 items 16 and 21: revoking a key or disabling a user ends the streams and sockets it holds open,
// on every replica (two application instances on one database and one Redis), and a WebSocket checks its
// credential on every frame.
for (const dialect of DIALECTS) {
  describe(`credential revocation ends open streams across replicas (${dialect})`, {
    skip: !redisUrl && 'TEST_REDIS_URL is not set',
  }, () => {
    let testDb: TestDatabase;
    let a: TestApp;
    let b: TestApp;
    let gatewayA: FakeGateway;
    let gatewayB: FakeGateway;
    let baseA: string;
    let baseB: string;

    before(async () => {
      markSuiteRan('redis');
      testDb = await createTestDatabase(dialect);
      gatewayA = new FakeGateway();
      gatewayB = new FakeGateway();
      const env = { REDIS_URL: redisUrl!, RATE_LIMIT_ENABLED: 'false' };
      a = await startTestApp({ testDb, env, gateway: gatewayA });
      b = await startTestApp({ testDb, env, gateway: gatewayB, migrate: false });
      baseA = await a.listen();
      baseB = await b.listen();
    });
    after(async () => {
      b?.app.server.closeAllConnections();
      a?.app.server.closeAllConnections();
      await b?.close();
      await a?.close();
      await testDb?.drop();
    });

    const conversationOf = async (token: string) => {
      const res = await a.inject({
        method: 'POST',
        url: '/api/conversations',
        headers: bearer(token),
        payload: { model: 'fake-model' },
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json().id as string;
    };

    it('a key revoked on A closes its WebSocket on A and ends its SSE stream, its generation and its /v1 stream on B', async () => {
      const user = await createUser(a, `revoke-${dialect}@example.com`);
      const created = await a.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'to revoke' },
      });
      const { id: keyId, key } = created.json() as { id: string; key: string };
      const conversationId = await conversationOf(key);

      // On A: a socket that got one reply.
      const ws = await connectWs(
        `${baseA.replace('http', 'ws')}/api/conversations/${conversationId}/ws?token=${encodeURIComponent(key)}`,
      );
      let closeCode: number | undefined;
      (ws.socket as unknown as { on(e: 'close', l: (code: number) => void): void }).on('close', (code) => {
        closeCode = code;
      });
      ws.send({ type: 'send', content: 'first' });
      await ws.waitFor((f) => f.type === 'done');

      // On B: a conversation reply held mid-stream, and a /v1 stream held before its end.
      const sseGate = new Gate();
      gatewayB.script({ chunks: ['partial', ' never'], holdAfter: 1, gate: sseGate });
      const sse = await SseConnection.open(`${baseB}/api/conversations/${conversationId}/messages`, {
        method: 'POST',
        headers: bearer(key),
        body: { content: 'second' },
      });
      const start = await sse.waitFor((e) => e.event === 'start');
      await sseGate.reached;
      await sse.waitFor((e) => e.event === 'delta');
      const v1Gate = new Gate();
      gatewayB.script({ chunks: ['v1 text', ' never'], holdAfter: 1, gate: v1Gate });
      const v1 = await openV1Stream(baseB, key);
      await v1Gate.reached;

      const revoked = await a.inject({
        method: 'DELETE',
        url: `/api/keys/${keyId}`,
        headers: bearer(user.accessToken),
      });
      assert.equal(revoked.statusCode, 200, revoked.body);

      try {
        // The WebSocket on A: told why, then closed with 4401.
        const closed = await ws.waitFor((f) => f.type === 'closed');
        assert.equal(closed.error.code, 'invalid_api_key');
        await ws.closed;
        assert.equal(closeCode, CREDENTIALS_CLOSE_CODE);

        // The /v1 stream on B: an in-band error, then [DONE].
        const text = await v1.text;
        assert.match(text, /"code":"invalid_api_key"/);
        assert.match(text, /data: \[DONE\]\n\n$/);

        // The generation on B stopped (its text so far kept); its SSE stream ended.
        const last = await sse.waitFor((e) => e.event === 'error' || e.event === 'closed');
        await sse.ended;
        const kinds = sse.events.map((e) => e.event);
        assert.ok(kinds.includes('closed') || kinds.includes('error'), kinds.join());
        await eventually(async () => {
          const row = await b.database.db
            .selectFrom('messages')
            .selectAll()
            .where('id', '=', start.data.message_id)
            .executeTakeFirstOrThrow();
          return row.status === 'partial' && row.content === 'partial';
        }, 'the reply saved as partial');
        const generation = await b.database.db
          .withTables<{ generations: { id: string; status: string; error: string | null } }>()
          .selectFrom('generations')
          .selectAll()
          .where('id', '=', start.data.generation_id)
          .executeTakeFirstOrThrow();
        assert.equal(generation.error, 'credentials_revoked');
        assert.ok(last);
      } finally {
        sseGate.open();
        v1Gate.open();
      }
    });

    it('a user disabled on B closes their WebSocket (signed in with a token) on A', async () => {
      const user = await createUser(a, `disable-${dialect}@example.com`);
      const conversationId = await conversationOf(user.accessToken);
      const ws = await connectWs(
        `${baseA.replace('http', 'ws')}/api/conversations/${conversationId}/ws`,
        bearer(user.accessToken),
      );
      ws.send({ type: 'ping' });
      await ws.waitFor((f) => f.type === 'pong');
      const disabled = await b.inject({
        method: 'PATCH',
        url: `/api/users/${user.id}`,
        headers: bearer(TEST_MASTER_KEY),
        payload: { disabled: true },
      });
      assert.equal(disabled.statusCode, 200, disabled.body);
      const closed = await ws.waitFor((f) => f.type === 'closed');
      assert.equal(closed.error.code, 'invalid_token');
      await ws.closed;
    });

    it('checks the credential on every frame: a key revoked without a notice (in the database) refuses the next frame', async () => {
      const user = await createUser(a, `frames-${dialect}@example.com`);
      const created = await a.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'revoked behind our back' },
      });
      const { id: keyId, key } = created.json() as { id: string; key: string };
      const conversationId = await conversationOf(key);
      const ws = await connectWs(
        `${baseA.replace('http', 'ws')}/api/conversations/${conversationId}/ws`,
        bearer(key),
      );
      ws.send({ type: 'ping' });
      await ws.waitFor((f) => f.type === 'pong');
      // As `colloquy keys revoke` on another host would, straight in the database: no notice is published.
      await a.database.db
        .updateTable('api_keys')
        .set({ revoked_at: new Date().toISOString() })
        .where('id', '=', keyId)
        .execute();
      // Within the key cache's TTL (2 s) a frame may still pass; the first one after it is refused.
      await eventually(() => {
        if (ws.frames.some((f) => f.type === 'closed')) return true;
        if (ws.socket.readyState === 1) ws.send({ type: 'ping' });
        return false;
      }, 'a frame refused');
      const closed = ws.frames.find((f) => f.type === 'closed');
      assert.equal(closed.error.code, 'invalid_api_key');
      await ws.closed;
    });
  });
}
