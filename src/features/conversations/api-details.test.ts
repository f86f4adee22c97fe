import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { FakeGateway, Gate } from './testing/fake-gateway.js';
import { SseConnection } from './testing/sse-client.js';
import { connectWs } from './testing/ws-client.js';

// Issue 19, items 3, 11, 18 and 19: the routing file's context windows, the streams gauge, an empty
// Last-Event-ID and unknown WebSocket frames. Nothing here depends on the database's dialect.

/** ~2,000 tokens of text (a word is about a token). */
const longText = (tag: string) => `${tag}: ${'lorem ipsum dolor sit amet '.repeat(400)}`;

describe('conversations: routing-file context windows (issue 19 item 3)', () => {
  let dir: string;
  let h: TestApp;
  let gateway: FakeGateway;
  let user: TestUser;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-ctx-'));
    const file = path.join(dir, 'routing.json');
    writeFileSync(
      file,
      JSON.stringify({
        models: [
          { name: 'wide-alias', context_window: 50_000, deployments: [{ provider: 'openai', model: 'x' }] },
          { name: 'narrow-alias', context_window: 4_096, deployments: [{ provider: 'openai', model: 'x' }] },
        ],
      }),
    );
    gateway = new FakeGateway();
    gateway.models.add('wide-alias');
    gateway.models.add('narrow-alias');
    h = await startTestApp({
      gateway,
      env: { COLLOQUY_CONFIG: file, OPENAI_API_KEY: 'sk-unused', RATE_LIMIT_ENABLED: 'false' },
    });
    user = await createUser(h, 'ctx@example.com');
  });
  after(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Four ~2,000-token user turns on `model`; the messages the model got for the last one. */
  const lastPrompt = async (model: string) => {
    const conv = await h.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(user.accessToken),
      payload: { model },
    });
    for (const tag of ['one', 'two', 'three', 'four']) {
      const res = await h.inject({
        method: 'POST',
        url: `/api/conversations/${conv.json().id}/messages`,
        headers: bearer(user.accessToken),
        payload: { content: longText(tag), stream: false },
      });
      assert.equal(res.statusCode, 201, res.body);
    }
    return gateway.calls.at(-1)!.body.messages;
  };

  it("keeps a history that fits the alias's 50,000-token window (the 8,192 default would trim it)", async () => {
    const messages = await lastPrompt('wide-alias');
    assert.deepEqual(
      messages.filter((m) => m.role === 'user').map((m) => String(m.content).split(':')[0]),
      ['one', 'two', 'three', 'four'],
    );
  });

  it("trims to the alias's 4,096-token window", async () => {
    const messages = await lastPrompt('narrow-alias');
    assert.deepEqual(
      messages.filter((m) => m.role === 'user').map((m) => String(m.content).split(':')[0]),
      ['four'],
    );
  });
});

describe('conversations: streams gauge, Last-Event-ID, WebSocket frames (issue 19 items 11, 18, 19)', () => {
  let h: TestApp;
  let gateway: FakeGateway;
  let user: TestUser;
  let base: string;
  let conversationId: string;

  before(async () => {
    gateway = new FakeGateway();
    h = await startTestApp({ gateway });
    base = await h.listen();
    user = await createUser(h, 'details@example.com');
    const conv = await h.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(user.accessToken),
      payload: { model: 'fake-model' },
    });
    conversationId = conv.json().id;
  });
  after(async () => {
    await h?.close();
  });

  const activeStreams = async () => {
    const text = (await h.inject({ method: 'GET', url: '/metrics' })).body;
    const value = (api: string) =>
      Number(new RegExp(`^colloquy_active_streams\\{api="${api}"[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    return { sse: value('conversations_sse'), ws: value('conversations_ws') };
  };

  it('counts conversation SSE streams and WebSockets in colloquy_active_streams while they are open', async () => {
    const gate = new Gate();
    gateway.script({ chunks: ['held', ' open'], holdAfter: 1, gate });
    const sse = await SseConnection.open(`${base}/api/conversations/${conversationId}/messages`, {
      method: 'POST',
      headers: bearer(user.accessToken),
      body: { content: 'hold the stream' },
    });
    await sse.waitFor((e) => e.event === 'delta');
    const ws = await connectWs(
      `${base.replace('http', 'ws')}/api/conversations/${conversationId}/ws?token=${encodeURIComponent(user.accessToken)}`,
    );
    try {
      assert.deepEqual(await activeStreams(), { sse: 1, ws: 1 });
    } finally {
      gate.open();
      await sse.ended;
      await ws.close();
    }
    // The gauge goes down when they close (the socket's close handler runs on the server after ours).
    const deadline = Date.now() + 5_000;
    let now = await activeStreams();
    while ((now.sse !== 0 || now.ws !== 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      now = await activeStreams();
    }
    assert.deepEqual(now, { sse: 0, ws: 0 });
  });

  it('treats an empty Last-Event-ID as absent (EventSource sends one before its first id)', async () => {
    const sent = await h.inject({
      method: 'POST',
      url: `/api/conversations/${conversationId}/messages`,
      headers: bearer(user.accessToken),
      payload: { content: 'replay me', stream: false },
    });
    const generationId = sent.json().generation_id;
    for (const header of ['', '   ']) {
      const res = await h.inject({
        method: 'GET',
        url: `/api/generations/${generationId}/events`,
        headers: { ...bearer(user.accessToken), 'last-event-id': header },
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(res.body, /^id: 1\nevent: message\n/);
      assert.match(res.body, /event: done/);
    }
    const bad = await h.inject({
      method: 'GET',
      url: `/api/generations/${generationId}/events`,
      headers: { ...bearer(user.accessToken), 'last-event-id': 'abc' },
    });
    assert.equal(bad.statusCode, 400);
  });

  it('answers an unknown or malformed WebSocket frame with a clear rejection naming the field', async () => {
    const ws = await connectWs(
      `${base.replace('http', 'ws')}/api/conversations/${conversationId}/ws`,
      bearer(user.accessToken),
    );
    try {
      const rejection = async (frame: string) => {
        const before = ws.frames.length;
        ws.socket.send(frame);
        return ws.waitFor((f) => ws.frames.indexOf(f) >= before && f.type === 'rejected');
      };
      const bogus = await rejection('{"type":"bogus"}');
      assert.equal(bogus.request_type, 'bogus');
      assert.equal(bogus.error.code, 'validation_error');
      assert.equal(bogus.error.param, 'type');
      assert.equal(bogus.error.message, 'unknown frame type "bogus": expected "send", "cancel" or "ping"');

      const noType = await rejection('{"content":"hi"}');
      assert.equal(noType.error.param, 'type');
      assert.equal(noType.request_type, null);

      const badContent = await rejection('{"type":"send","content":5}');
      assert.equal(badContent.request_type, 'send');
      assert.equal(badContent.error.param, 'content');
      assert.match(badContent.error.message, /^send frame: `content` /);

      const extra = await rejection('{"type":"ping","x":1}');
      assert.equal(extra.error.param, 'x');

      const notJson = await rejection('not json');
      assert.equal(notJson.error.code, 'validation_error');
      assert.equal(notJson.error.message, 'a frame must be a JSON object');
      const proto = await rejection('{"type":"constructor"}');
      assert.equal(proto.error.param, 'type');

      // The socket still works.
      ws.send({ type: 'ping' });
      await ws.waitFor((f) => f.type === 'pong');
    } finally {
      await ws.close();
    }
  });
});
