import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { FakeGateway, Gate } from '../../src/features/conversations/testing/fake-gateway.js';
import type { NativeProtocol } from '../../src/providers/types.js';
import { bearer, createUser, startTestApp, type TestApp } from '../helpers/app.js';
import { createTestDatabase, DIALECTS, markSuiteRan, type TestDatabase } from '../helpers/databases.js';

const redisUrl = process.env.TEST_REDIS_URL;
/** Every wait of this file is bounded by this (a busy 2-core machine runs several suites at once). */
const WAIT_MS = 15_000;

/** `promise`, or a failure naming `what` once WAIT_MS has passed (the timer cleared either way). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), WAIT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Bounded wait for a condition (count and deadline). */
async function eventually(probe: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + WAIT_MS;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out: ${what}`);
}

/**
 * The fake gateway, with a deployment that takes legacy completions as they come (as a vLLM server would),
 * so `POST /v1/completions` is served; Messages and Responses are translated onto chat chunks.
 */
class Gateway extends FakeGateway {
  nativeSupport(_model: string, protocol: NativeProtocol) {
    return protocol === 'completions' ? ('all' as const) : ('none' as const);
  }
}

/** A scripted upstream stream that sends one chunk, then holds until the test (or an abort) ends it. */
function holdNext(gateway: FakeGateway) {
  const gate = new Gate();
  gateway.script({ chunks: ['held text', ' never sent'], holdAfter: 1, gate });
  return gate;
}

/** What a stream read through an SDK came to: its events, and the error it threw (if it threw). */
interface Outcome<E> {
  events: E[];
  error?: unknown;
}

async function drain<E>(stream: AsyncIterable<E>, events: E[]): Promise<Outcome<E>> {
  try {
    for await (const event of stream) events.push(event);
    return { events };
  } catch (error) {
    return { events, error };
  }
}

// Issue 19 item 16 / issue 20: a revoked credential ends every streaming protocol's open streams, each with
// its own error event, on every replica (two application instances on one database and one Redis; one
// instance without Redis, where revocations are local).
for (const dialect of DIALECTS) {
  const replicas = redisUrl ? 'two replicas sharing Redis' : 'one replica';
  describe(`revocation ends Messages, Responses and completions streams (${dialect}, ${replicas})`, () => {
    let testDb: TestDatabase;
    let a: TestApp;
    let b: TestApp;
    let gatewayB: Gateway;
    let baseB: string;

    before(async () => {
      if (redisUrl) markSuiteRan('redis');
      testDb = await createTestDatabase(dialect);
      const env = { RATE_LIMIT_ENABLED: 'false', ...(redisUrl ? { REDIS_URL: redisUrl } : {}) };
      gatewayB = new Gateway();
      a = await startTestApp({ testDb, env, gateway: redisUrl ? new Gateway() : gatewayB });
      b = redisUrl ? await startTestApp({ testDb, env, gateway: gatewayB, migrate: false }) : a;
      baseB = await b.listen();
    });
    after(async () => {
      b?.app.server.closeAllConnections();
      if (b !== a) await b?.close();
      await a?.close();
      await testDb?.drop();
    });

    const newKey = async (email: string) => {
      const user = await createUser(a, email);
      const created = await a.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: 'streams' },
      });
      assert.equal(created.statusCode, 201, created.body);
      const { id, key } = created.json() as { id: string; key: string };
      return { user, keyId: id, key };
    };

    it('a key revoked on A ends its streams on B with each protocol’s error; the SDKs raise or report it', async () => {
      const { user, keyId, key } = await newKey(`streams-${dialect}@example.com`);
      const claude = new Anthropic({ baseURL: baseB, apiKey: key, maxRetries: 0, timeout: WAIT_MS });
      const openai = new OpenAI({ baseURL: `${baseB}/v1`, apiKey: key, maxRetries: 0, timeout: WAIT_MS });
      const gates: Gate[] = [];
      try {
        // Messages, through the SDK's stream helper: one text delta received, the rest held upstream.
        gates.push(holdNext(gatewayB));
        const messages = claude.messages.stream({
          model: 'fake-model',
          max_tokens: 64,
          messages: [{ role: 'user', content: 'hi' }],
        });
        const messageTypes: string[] = [];
        messages.on('streamEvent', (event) => messageTypes.push(event.type));
        const firstText = new Promise((resolve) => messages.once('text', resolve));
        const messagesEnd = messages.finalMessage().then(
          () => ({ error: undefined }),
          (error: unknown) => ({ error }),
        );
        await within(firstText, 'the Messages stream’s first text');

        // Responses, iterated as the SDK's stream of events.
        gates.push(holdNext(gatewayB));
        const responseEvents: OpenAI.Responses.ResponseStreamEvent[] = [];
        const responses = await within(
          openai.responses.create({ model: 'fake-model', input: 'hi', stream: true }),
          'the Responses stream’s headers',
        );
        const responsesEnd = drain(responses, responseEvents);
        await within(gates[1]!.reached, 'the Responses stream held upstream');
        await eventually(
          () => responseEvents.some((e) => e.type === 'response.output_text.delta'),
          'the Responses stream’s first delta',
        );

        // Legacy completions.
        gates.push(holdNext(gatewayB));
        const completionChunks: OpenAI.Completion[] = [];
        const completions = await within(
          openai.completions.create({ model: 'fake-model', prompt: 'hi', stream: true }),
          'the completions stream’s headers',
        );
        const completionsEnd = drain(completions, completionChunks);
        await eventually(() => completionChunks.length > 0, 'the completions stream’s first chunk');

        const revoked = await a.inject({
          method: 'DELETE',
          url: `/api/keys/${keyId}`,
          headers: bearer(user.accessToken),
        });
        assert.equal(revoked.statusCode, 200, revoked.body);

        // Messages: Anthropic's `error` event (authentication_error); the SDK's helper rejects with it.
        const { error: messagesError } = await within(messagesEnd, 'the Messages stream to end');
        assert.ok(messagesError instanceof Anthropic.APIError, String(messagesError));
        const body = messagesError.error as { type: string; error: { type: string; message: string } };
        assert.equal(body.type, 'error');
        assert.equal(body.error.type, 'authentication_error');
        assert.match(body.error.message, /revoked/);
        assert.ok(messageTypes.includes('content_block_delta'), messageTypes.join());
        assert.ok(!messageTypes.includes('message_stop'), messageTypes.join());

        // Responses: the documented `error` event then `response.failed`, which the SDK yields as events.
        const { error: responsesError } = await within(responsesEnd, 'the Responses stream to end');
        assert.equal(responsesError, undefined);
        const types = responseEvents.map((e) => e.type);
        assert.deepEqual(types.slice(-2), ['error', 'response.failed'], types.join());
        const errorEvent = responseEvents.at(-2) as OpenAI.Responses.ResponseErrorEvent;
        assert.equal(errorEvent.code, 'invalid_api_key');
        const failed = responseEvents.at(-1) as OpenAI.Responses.ResponseFailedEvent;
        assert.equal(failed.response.status, 'failed');
        assert.equal(failed.response.error?.code, 'invalid_api_key');

        // Completions: the in-band error, which the SDK raises.
        const { error: completionsError } = await within(completionsEnd, 'the completions stream to end');
        assert.ok(completionsError instanceof OpenAI.APIError, String(completionsError));
        assert.equal(completionsError.code, 'invalid_api_key');

        // One ledger row per stream, recorded as a stream cut short (what it produced kept).
        await eventually(async () => {
          const rows = await b.database.db
            .selectFrom('usage_records')
            .select(['protocol', 'status'])
            .where('api_key_id', '=', keyId)
            .execute();
          return rows.length === 3 && rows.every((r) => r.status === 'partial');
        }, 'three partial ledger rows');
        const protocols = await b.database.db
          .selectFrom('usage_records')
          .select('protocol')
          .where('api_key_id', '=', keyId)
          .execute();
        assert.deepEqual(protocols.map((r) => r.protocol).sort(), ['completions', 'messages', 'responses']);
        // Nothing is left watching the ended streams.
        await eventually(() => b.app.credentials.size === 0, 'no credential watched');
      } finally {
        for (const gate of gates) gate.open();
      }
    });

    it('a key that expires mid-stream ends its Messages stream with authentication_error', async () => {
      const { keyId, key } = await newKey(`expiring-${dialect}@example.com`);
      // Keys expire in whole days: this one is moved to expire in a few seconds, before its first use.
      await a.database.db
        .updateTable('api_keys')
        .set({ expires_at: new Date(Date.now() + 4_000).toISOString() })
        .where('id', '=', keyId)
        .execute();
      const claude = new Anthropic({ baseURL: baseB, apiKey: key, maxRetries: 0, timeout: WAIT_MS });
      const gate = holdNext(gatewayB);
      try {
        const stream = claude.messages.stream({
          model: 'fake-model',
          max_tokens: 64,
          messages: [{ role: 'user', content: 'hi' }],
        });
        const ended = stream.finalMessage().then(
          () => undefined,
          (error: unknown) => error,
        );
        await within(gate.reached, 'the Messages stream held upstream');
        const error = await within(ended, 'the Messages stream to end at the key’s expiry');
        assert.ok(error instanceof Anthropic.APIError, String(error));
        const body = error.error as { error: { type: string; message: string } };
        assert.equal(body.error.type, 'authentication_error');
        assert.match(body.error.message, /expired/);
      } finally {
        gate.open();
      }
    });
  });
}
