import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { type ChatStack, startChatStack } from '../helpers/chat-stack.js';

/**
 * Load shedding answers the Messages API in Anthropic's shape: past MAX_CONCURRENT_REQUESTS, a request is
 * refused at once with 529 overloaded_error and Retry-After, which Anthropic's SDKs know to back off from.
 */
describe('load shedding on /v1/messages', () => {
  let s: ChatStack;
  before(async () => {
    // Ten words, 200 ms apart: a stream stays open for about two seconds.
    s = await startChatStack({
      env: { MAX_CONCURRENT_REQUESTS: '1' },
      routing: null,
      fakeOptions: { chunkIntervalMs: 200, reply: 'one two three four five six seven eight nine ten' },
    });
  });
  after(() => s?.close());

  it('a Messages stream holds the only slot; the next Messages request gets 529 overloaded_error', async () => {
    const streaming = new AbortController();
    const stream = await fetch(`${s.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': s.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        max_tokens: 50,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      signal: streaming.signal,
    });
    assert.equal(stream.status, 200);
    try {
      const client = new Anthropic({ baseURL: s.url, apiKey: s.apiKey, maxRetries: 0 });
      await assert.rejects(
        client.messages.create({
          model: 'gpt-4o-mini',
          max_tokens: 5,
          messages: [{ role: 'user', content: 'x' }],
        }),
        (err) => {
          assert.ok(err instanceof Anthropic.APIError, String(err));
          assert.equal(err.status, 529);
          assert.equal((err.error as { error: { type: string } }).error.type, 'overloaded_error');
          assert.equal(err.headers?.get('retry-after'), '1');
          return true;
        },
      );
    } finally {
      streaming.abort();
      await stream.body?.cancel().catch(() => {});
    }
  });
});
