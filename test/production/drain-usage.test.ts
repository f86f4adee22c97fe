import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChatGateway } from '../../src/providers/router/types.js';
import type { ChatCompletionChunk, StreamEvent } from '../../src/providers/types.js';
import { bearer, startTestApp, TEST_MASTER_KEY } from '../helpers/app.js';

/**
 * A /v1 stream that ends while the replica drains is billed like any other (the rolling-restart rehearsal on
 * MariaDB lost such rows): its ledger row is written after its answer has ended (the usage is estimated when
 * the upstream sent none), and the server closes as soon as the last connection has ended — so the app's close
 * must wait for that row before the database closes.
 */
const chunk = (content: string): StreamEvent => ({
  chunk: {
    id: 'chatcmpl-drain',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'slow',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  } as ChatCompletionChunk,
});

describe('usage rows across a drain', () => {
  it('a /v1 stream that ends during the app close has its ledger row once the close resolves', async () => {
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let streaming!: () => void;
    const started = new Promise<void>((resolve) => {
      streaming = resolve;
    });
    // An upstream that reports no usage (the ledger estimates it), its last chunk held until the close began.
    const gateway: ChatGateway = {
      complete: () => Promise.reject(new Error('not used')),
      stream: async () => ({
        route: {
          requestedModel: 'slow',
          provider: 'test',
          deployment: 'test/slow',
          upstreamModel: 'slow',
          attempts: 1,
          fallback: false,
        },
        ttftMs: 1,
        events: (async function* () {
          yield chunk('words streamed before the drain, ');
          streaming();
          await finished;
          yield chunk(`and the last ones after it began (${Math.random()})`);
        })(),
      }),
      listModels: async () => [{ id: 'slow', owned_by: 'test' }],
      hasModel: () => true,
    };
    let draining = false;
    const t = await startTestApp({ gateway, isDraining: () => draining });
    try {
      const url = await t.listen();
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-request-id': 'req_drain_usage_1',
          ...bearer(TEST_MASTER_KEY),
        },
        body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(res.status, 200);
      await started;
      // What server.ts does after SHUTDOWN_DELAY; the database closes as soon as this resolves.
      draining = true;
      const closed = t.app.close();
      finish();
      const text = await res.text();
      assert.match(text, /data: \[DONE\]/);
      await closed;

      const rows = await t.database.db
        .selectFrom('usage_records')
        .select(['request_id', 'status', 'completion_tokens'])
        .where('request_id', '=', 'req_drain_usage_1')
        .execute();
      assert.equal(rows.length, 1, 'the stream has its ledger row before the database closes');
      assert.equal(rows[0]!.status, 'ok');
      assert.ok(Number(rows[0]!.completion_tokens) > 0, 'its usage is estimated');
    } finally {
      await t.close();
    }
  });
});
