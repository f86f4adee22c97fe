import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import SqliteDatabase from 'better-sqlite3';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, eventually, sseData, startChatStack } from '../helpers/chat-stack.js';
import { openDemoStream, spawnDistServer } from '../helpers/dist-server.js';
import { freePort, startRedisServer } from '../helpers/net.js';

describe('Redis outage: the service degrades and recovers by itself', () => {
  let stack: ChatStack;
  let redis: ChildProcess;
  let port: number;
  before(async () => {
    port = await freePort();
    redis = await startRedisServer(port);
    stack = await startChatStack({
      env: {
        REDIS_URL: `redis://127.0.0.1:${port}`,
        RATE_LIMIT_ENABLED: 'true',
        RESPONSE_CACHE_TTL_SECONDS: '3600',
      },
    });
  });
  after(async () => {
    await stack?.close();
    redis?.kill('SIGKILL');
  });

  const chat = () =>
    fetch(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(stack.apiKey) },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        temperature: 0,
        messages: [{ role: 'user', content: 'hello' }],
      }),
    });
  const ready = async () =>
    (await fetch(`${stack.url}/health/ready`)).json() as Promise<{ failing: string[] }>;

  // A request hanging on the dead Redis fails at this bound (how fast is not asserted: a loaded machine).
  it('keeps answering while Redis is gone, reports it, and recovers when Redis returns', {
    timeout: 60_000,
  }, async () => {
    assert.equal((await chat()).status, 200);
    assert.deepEqual((await ready()).failing, []);

    redis.kill('SIGKILL');
    await eventually(async () => (await ready()).failing.includes('redis'), 5_000, 'readiness reports redis');
    for (let i = 0; i < 5; i++) {
      const res = await chat();
      assert.equal(res.status, 200, 'fail-open: limits count locally, the cache misses');
    }
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    assert.match(metrics, /colloquy_redis_up\{[^}]*\} 0/);
    await eventually(
      () => stack.t.logText().includes('redis unavailable; retrying in the background'),
      5_000,
      'the outage is logged',
    );
    const lines = stack.t.logText().split('\n');
    const client = lines.filter((l) => l.includes('redis unavailable; retrying in the background'));
    assert.equal(
      client.length,
      1,
      `the outage is logged once, not per reconnect attempt:\n${client.join('\n')}`,
    );
    // Each part that falls back (cache, limits) says so once, not once per request.
    assert.ok(lines.filter((l) => l.includes('redis unavailable')).length <= 4);

    redis = await startRedisServer(port);
    await eventually(async () => (await ready()).failing.length === 0, 10_000, 'readiness recovers');
    assert.equal((await chat()).status, 200);
    const after = await (await fetch(`${stack.url}/metrics`)).text();
    assert.match(after, /colloquy_redis_up\{[^}]*\} 1/);
  });
});

describe('SIGTERM with live streams', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-sigterm-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const startServer = (env: Record<string, string>) =>
    spawnDistServer({
      cwd: dir,
      env: { DATABASE_URL: `sqlite:${path.join(dir, 'colloquy.db')}`, LOG_LEVEL: 'info', ...env },
    });

  it('lets in-flight streams finish, refuses new connections, and exits 0', async () => {
    const server = await startServer({ DEMO_WORD_DELAY_MS: '30', SHUTDOWN_TIMEOUT: '20' });
    const streams = await Promise.all(
      Array.from({ length: 20 }, (_, i) => openDemoStream(server.url, `stream ${i}`)),
    );
    server.child.kill('SIGTERM');
    await sleep(100);
    // SHUTDOWN_DELAY 0: the listener is closed (streams still running), so a proxy would try another replica.
    const refused = await fetch(`${server.url}/api/me`).then(
      (res) => `answered ${res.status}`,
      (err: Error & { cause?: { code?: string } }) => err.cause?.code ?? err.message,
    );
    assert.equal(refused, 'ECONNREFUSED', 'a new connection during the drain is refused');
    const bodies = await Promise.all(streams.map((s) => s.rest));
    for (const body of bodies) {
      const events = sseData(body);
      assert.equal(events.at(-1), '[DONE]');
      assert.ok(!events.some((e) => e.includes('"error"')), 'finished normally');
    }
    assert.equal(await server.exited, 0, server.output());
  });

  it('a connection that never sends a request does not hold the exit past SHUTDOWN_TIMEOUT', async () => {
    const server = await startServer({ SHUTDOWN_TIMEOUT: '1' });
    const { hostname, port } = new URL(server.url);
    // Connected, nothing sent: Node stops its headers timeout once the listener closes, so only the drain's
    // last resort ends it.
    const silent = net.connect(Number(port), hostname);
    silent.on('error', () => {});
    await once(silent, 'connect');
    const ended = once(silent, 'close');
    server.child.kill('SIGTERM');
    const deadline = new Promise((resolve) =>
      setTimeout(resolve, 20_000, 'still running after 20 s').unref(),
    );
    const exit = await Promise.race([server.exited, deadline]);
    if (exit !== 0) server.child.kill('SIGKILL');
    assert.equal(exit, 0, server.output());
    await ended;
    assert.match(server.output(), /connections still open after the drain: closing them/);
  });

  it('after SHUTDOWN_TIMEOUT ends the streams still open in-band, saves conversation replies as partial, exits 0', async () => {
    const server = await startServer({ DEMO_WORD_DELAY_MS: '400', SHUTDOWN_TIMEOUT: '1' });
    const created = await fetch(`${server.url}/api/users`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(TEST_MASTER_KEY) },
      body: JSON.stringify({ email: 'drain@example.com', password: 'a-long-enough-password' }),
    });
    assert.equal(created.status, 201);
    const login = (await (
      await fetch(`${server.url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'drain@example.com', password: 'a-long-enough-password' }),
      })
    ).json()) as { access_token: string };
    const conversation = (await (
      await fetch(`${server.url}/api/conversations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...bearer(login.access_token) },
        body: JSON.stringify({ model: 'demo' }),
      })
    ).json()) as { id: string };
    const reply = await fetch(`${server.url}/api/conversations/${conversation.id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...bearer(login.access_token) },
      body: JSON.stringify({ content: 'tell me a long story' }),
    });
    assert.equal(reply.status, 200);
    const replyText = reply.text();
    const v1 = await openDemoStream(server.url, 'a slow one');
    await sleep(900); // a couple of words streamed
    server.child.kill('SIGTERM');
    const [v1Body] = await Promise.all([v1.rest, replyText]);
    const events = sseData(v1Body);
    assert.equal(events.at(-1), '[DONE]', 'the stream is closed properly, not cut');
    assert.ok(
      events.some((e) => e.includes('"error"')),
      `with an in-band error event: ${events.slice(-2).join(' / ')}\n${server.output().slice(-2500)}`,
    );
    assert.equal(await server.exited, 0, server.output());

    const db = new SqliteDatabase(path.join(dir, 'colloquy.db'), { readonly: true });
    const rows = db
      .prepare("select status, content from messages where conversation_id = ? and role = 'assistant'")
      .all(conversation.id) as { status: string; content: string }[];
    db.close();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.status, 'partial');
    assert.ok(rows[0]!.content.length > 0, 'the text so far is kept');
  });
});
