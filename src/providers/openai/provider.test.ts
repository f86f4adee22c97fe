import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type FakeUpstream, startFakeUpstream } from '../../../test/fake-upstream/server.js';
import { CallController } from '../../core/call-signal.js';
import type { CallOptions } from '../types.js';
import { OpenAiProvider } from './provider.js';

const API_KEY = 'sk-test-openai';
const body = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hi' }] };

function callOptions(signal: AbortSignal): CallOptions {
  return {
    signal,
    requestId: 'req_test',
    timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
  };
}

async function until(check: () => boolean, what: string) {
  for (let i = 0; i < 100 && !check(); i++) await sleep(20);
  assert.ok(check(), what);
}

describe('OpenAiProvider streams and the upstream connection', () => {
  let upstream: FakeUpstream;
  let provider: OpenAiProvider;
  beforeEach(async () => {
    upstream = await startFakeUpstream({ apiKey: API_KEY });
    provider = new OpenAiProvider({ baseUrl: upstream.baseUrl, apiKey: API_KEY });
  });
  afterEach(() => upstream.close());

  it('reads streams to [DONE] one after another over kept-alive connections', async () => {
    for (let i = 0; i < 6; i++) {
      let text = '';
      const events = await provider.stream(body, callOptions(new CallController().signal));
      for await (const { chunk } of events) text += chunk.choices[0]?.delta?.content ?? '';
      assert.equal(text, 'Hello from the fake upstream, streaming word by word.');
    }
    assert.equal(upstream.requests.length, 6);
    // The next call may start while the last one's connection still reads its final bytes: two at most.
    assert.ok(upstream.openSockets() <= 2, `${upstream.openSockets()} connections for 6 streams`);
  });

  it('closes the upstream connection when the call is aborted mid-stream (the upstream stops generating)', async () => {
    upstream.set({ chunkIntervalMs: 50 });
    const controller = new CallController();
    const events = await provider.stream(body, callOptions(controller.signal));
    for await (const _event of events) {
      controller.abort(new Error('the client went away'));
      break;
    }
    await until(() => upstream.openSockets() === 0, `${upstream.openSockets()} upstream sockets still open`);
  });
});
