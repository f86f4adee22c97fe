import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ProviderError } from './errors.js';
import { OpenAiProvider } from './openai/provider.js';

/*
 * An upstream that never completes a TCP handshake: a listener with a backlog of 1 in a process whose event
 * loop is blocked, so it accepts nothing; once its queue is full the kernel leaves new connections hanging.
 */
let listener: ChildProcess;
let port: number;
const held: net.Socket[] = [];

before(async () => {
  listener = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         console.log(s.address().port);
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  port = Number(await new Promise((resolve) => listener.stdout!.once('data', (d) => resolve(String(d)))));
  // Fill the accept queue: these complete, every later handshake waits.
  for (let i = 0; i < 2; i++) {
    const socket = net.connect({ port, host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    held.push(socket);
  }
});
after(() => {
  for (const socket of held) socket.destroy();
  listener.kill('SIGKILL');
});

describe('upstream connect timeout', () => {
  it('gives up connecting after the configured connect timeout, not undici’s default 10 s', async () => {
    const provider = new OpenAiProvider({ baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-test' });
    const startedAt = performance.now();
    // undici's own connect timeout (10 s) as an event: the failure must come before it could fire.
    let undiciDefaultPassed = false;
    const undiciDefault = setTimeout(() => {
      undiciDefaultPassed = true;
    }, 10_000);
    const failure = await provider
      .complete(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        {
          signal: new AbortController().signal,
          requestId: 'req_connect',
          timeouts: { connectMs: 300, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
        },
      )
      .then(
        () => assert.fail('a hanging handshake cannot answer'),
        (err: unknown) => err,
      );
    const elapsed = performance.now() - startedAt;
    clearTimeout(undiciDefault);
    assert.ok(failure instanceof ProviderError);
    assert.equal(failure.details.status, 504);
    assert.equal(failure.details.code, 'upstream_timeout');
    assert.match(failure.message, /connecting/);
    // undici's connect timer ticks every half second; its default timeout, which applied before, is 10 s.
    assert.ok(elapsed >= 250, `failed after ${Math.round(elapsed)} ms, before the connect timeout`);
    assert.equal(
      undiciDefaultPassed,
      false,
      `failed after ${Math.round(elapsed)} ms: undici's default applied`,
    );
  });
});
