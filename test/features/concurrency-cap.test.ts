import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectWs } from '../../src/features/conversations/testing/ws-client.js';
import { bearer } from '../helpers/app.js';
import { type ChatStack, eventually, startChatStack } from '../helpers/chat-stack.js';
import { prepareConversations } from '../reliability/traffic.js';

/**
 * MAX_CONCURRENT_REQUESTS: an open event stream and an open WebSocket each hold a slot until they end;
 * past the cap the answer is an immediate 503 + Retry-After: 1; health and metrics are always served.
 */
describe('global concurrency cap', () => {
  let s: ChatStack;
  let token: string;
  let conversation: string;
  before(async () => {
    // Ten words, 300 ms apart: a stream stays open for about three seconds.
    s = await startChatStack({
      env: { MAX_CONCURRENT_REQUESTS: '2' },
      routing: null,
      fakeOptions: { chunkIntervalMs: 300, reply: 'one two three four five six seven eight nine ten' },
    });
    const prepared = await prepareConversations(s, 1);
    token = prepared.token;
    conversation = prepared.conversations[0]!;
  });
  after(() => s?.close());

  const models = () => fetch(`${s.url}/v1/models`, { headers: bearer(s.apiKey) });
  const inFlight = async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return Number(/^colloquy_http_requests_in_flight(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]);
  };
  const openStream = (signal?: AbortSignal) =>
    fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(s.apiKey), 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      ...(signal ? { signal } : {}),
    });

  it('a WebSocket and a stream fill the cap: the next request gets 503 + Retry-After while both still hold their slots', async () => {
    // A stream that would run for half a minute: it is aborted below, long before its end.
    s.fake.set({ chunkIntervalMs: 3_000 });
    const ws = await connectWs(
      `${s.url.replace('http', 'ws')}/api/conversations/${conversation}/ws?token=${token}`,
    );
    const streaming = new AbortController();
    try {
      const stream = await openStream(streaming.signal);
      assert.equal(stream.status, 200);
      // Events, not milliseconds: a refusal queued for a slot could only come back once a slot was freed,
      // i.e. after the stream ended or the WebSocket closed. Neither happens before the refusal is in.
      let streamEnded = false;
      const streamBody = stream.text().then(
        () => {
          streamEnded = true;
        },
        () => {
          streamEnded = true;
        },
      );
      let wsClosed = false;
      void ws.closed.then(() => {
        wsClosed = true;
      });
      const refused = await models();
      const body = (await refused.json()) as { error: { code: string; message: string } };
      assert.equal(streamEnded, false, 'the refusal came back while the stream still held its slot');
      assert.equal(wsClosed, false, 'the refusal came back while the WebSocket still held its slot');
      assert.equal(refused.status, 503);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal(body.error.code, 'service_unavailable');
      assert.match(body.error.message, /limit of 2 concurrent requests/);

      assert.equal((await fetch(`${s.url}/health/ready`)).status, 200, 'readiness is not capped');
      assert.equal(await inFlight(), 2, 'the gauge counts the stream and the WebSocket');

      // A client that goes away frees its slot (no waiting for the upstream to finish).
      streaming.abort();
      await streamBody;
      await eventually(
        async () => (await models()).status === 200,
        5_000,
        'the aborted stream freed its slot',
      );
      ws.socket.close();
      await ws.closed;
      await eventually(async () => (await inFlight()) === 0, 5_000, 'every slot is free');
    } finally {
      streaming.abort();
      ws.socket.close();
      s.fake.set({ chunkIntervalMs: 300 });
    }
  });

  it('a stream that runs to its end frees its slot', async () => {
    const first = await openStream();
    const second = await openStream();
    assert.equal((await models()).status, 503, 'two open streams fill the cap');
    const bodies = await Promise.all([first.text(), second.text()]);
    for (const body of bodies) assert.match(body, /data: \[DONE\]/);
    await eventually(async () => (await models()).status === 200, 2_000, 'served again');
    assert.equal(await inFlight(), 0);
  });
});
