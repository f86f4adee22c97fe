import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { PriceTable } from '../../src/features/usage/prices.js';
import { TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, eventually, sseData, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';
import { DIALECTS } from '../helpers/databases.js';

const REPLY = 'Hello from the fake upstream, streaming word by word.';
const WORDS = REPLY.match(/\S+\s*/g)!;

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null };
}
interface Completion {
  id: string;
  object: string;
  model: string;
  choices: { index: number; message: { role: string; content: string | null }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  system_fingerprint?: string;
}
interface Chunk {
  object: string;
  choices: { index: number; delta: { content?: string; role?: string }; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  system_fingerprint?: string;
}

const messages = [{ role: 'user', content: 'Say hello' }];
/** What the fake upstream reports as usage for a request with these messages. */
const fakeUsage = (msgs: unknown[], words = WORDS.length) => {
  const prompt = JSON.stringify(msgs).length >> 2;
  return { prompt_tokens: prompt, completion_tokens: words, total_tokens: prompt + words };
};

function assertError(status: number, res: { status: number }, body: unknown, code?: string) {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(body)}`);
  const { error } = body as ErrorBody;
  assert.deepEqual(Object.keys(body as object), ['error']);
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof error.message, 'string');
  if (code) assert.equal(error.code, code);
  return error;
}

/**
 * Chat calls an upstream received. Not every request: Colloquy lists the upstream's models in the background
 * (the first unknown model name starts it), at a moment a busy machine decides.
 */
const chatCallsTo = (fake: ChatStack['fake']) =>
  fake.requests.filter((r) => r.path === '/v1/chat/completions');
const chatCalls = (fake: ChatStack['fake']) => chatCallsTo(fake).length;
const lastChatCall = (fake: ChatStack['fake']) => chatCallsTo(fake).at(-1)!;

/** A client of one stack: JSON and SSE requests with the stack's API key. */
function client(stack: () => ChatStack) {
  const post = async (body: unknown, headers: Record<string, string> = {}) => {
    const s = stack();
    return fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  };
  return {
    post,
    async json(body: unknown, headers?: Record<string, string>) {
      const res = await post(body, headers);
      return { res, body: (await res.json()) as unknown, requestId: res.headers.get('x-request-id')! };
    },
    /** A stream, read to its end: the data payloads, the [DONE] marker included. */
    async stream(body: Record<string, unknown>) {
      const res = await post({ ...body, stream: true });
      const text = await res.text();
      const data = res.headers.get('content-type')?.startsWith('text/event-stream') ? sseData(text) : [];
      return { res, text, data, requestId: res.headers.get('x-request-id')! };
    },
  };
}

/**
 * Watches Colloquy's own response to one request (the real one, in this process): whether it is waiting for
 * the client to drain (its last write returned false, no 'drain' since), and any write made meanwhile.
 */
function spyOnResponse(server: http.Server, requestId: string) {
  const spy = { blocked: false, writesWhileBlocked: 0, stop: () => {} };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (req.headers['x-request-id'] !== requestId) return;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    res.write = ((...args: unknown[]) => {
      if (spy.blocked) spy.writesWhileBlocked++;
      const ok = write(...args);
      if (!ok) spy.blocked = true;
      return ok;
    }) as typeof res.write;
    res.on('drain', () => {
      spy.blocked = false;
    });
  };
  server.on('request', onRequest);
  spy.stop = () => server.off('request', onRequest);
  return spy;
}

/** Parses a stream's events and checks the framing every stream must have: [DONE] once, and last. */
function parseStream(data: string[]) {
  assert.equal(data.at(-1), '[DONE]', 'the stream ends with [DONE]');
  assert.equal(data.filter((d) => d === '[DONE]').length, 1);
  const events = data.slice(0, -1).map((d) => JSON.parse(d) as Chunk & Partial<ErrorBody>);
  const chunks = events.filter((e): e is Chunk => !('error' in e));
  const errors = events.filter((e) => 'error' in e).map((e) => e.error!);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  return { events, chunks, errors, text };
}

for (const dialect of DIALECTS) {
  describe(`/v1 chat completions against a fake upstream (${dialect})`, () => {
    let s: ChatStack;
    const c = client(() => s);
    before(async () => {
      s = await startChatStack({
        dialect,
        env: {
          UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '500',
          UPSTREAM_IDLE_TIMEOUT_MS: '300',
          UPSTREAM_RETRIES: '2',
        },
      });
    });
    after(async () => {
      await s?.close();
    });

    describe('authentication and validation', () => {
      it('requires a credential: 401 in the OpenAI error shape', async () => {
        const variants: Record<string, string>[] = [
          {},
          { authorization: 'Bearer nope' },
          { authorization: `Bearer ck-${'x'.repeat(43)}` },
        ];
        for (const headers of variants) {
          const res = await fetch(`${s.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages }),
          });
          const error = assertError(401, res, await res.json());
          assert.equal(error.type, 'authentication_error');
          assert.equal(error.param, null);
        }
        const models = await fetch(`${s.url}/v1/models`);
        assertError(401, models, await models.json(), 'unauthorized');
        assert.equal(s.fake.requests.filter((r) => r.path === '/v1/chat/completions').length, 0);
      });

      it('refuses a bad body with 400 invalid_request_error naming the param', async () => {
        const before = chatCalls(s.fake);
        const cases: [unknown, string][] = [
          [{ messages }, 'model'],
          [{ model: 'gpt-4o-mini' }, 'messages'],
          [{ model: 'gpt-4o-mini', messages: [] }, 'messages'],
          [{ model: 'gpt-4o-mini', messages, temperature: 3 }, 'temperature'],
          [{ model: 'gpt-4o-mini', messages, max_tokens: 0 }, 'max_tokens'],
          [{ model: 'gpt-4o-mini', messages, stream: 'yes' }, 'stream'],
          [{ model: 'gpt-4o-mini', messages: [{ role: 'robot', content: 'x' }] }, 'messages.0.role'],
          [{ model: 'gpt-4o-mini', messages: [{ content: 'x' }] }, 'messages.0.role'],
          [{ model: 'gpt-4o-mini', messages, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
        ];
        for (const [body, param] of cases) {
          const { res, body: answer } = await c.json(body);
          const error = assertError(400, res, answer);
          assert.equal(error.type, 'invalid_request_error', JSON.stringify(body));
          assert.equal(error.param, param, `${JSON.stringify(body)}: ${error.message}`);
          assert.match(error.message, new RegExp(param.replaceAll('.', '\\.')));
        }
        const { res, body } = await c.json('{"model": ');
        assertError(400, res, body, 'invalid_request');
        assert.equal(chatCalls(s.fake), before, 'nothing reached the upstream');
      });
    });

    describe('non-streaming', () => {
      it('answers through OPENAI_BASE_URL with the upstream key, and records usage', async () => {
        const before = chatCalls(s.fake);
        const { res, body, requestId } = await c.json({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(res.headers.get('x-colloquy-deployment'), 'openai/gpt-4o-mini');
        const completion = body as Completion;
        assert.equal(completion.object, 'chat.completion');
        assert.equal(completion.model, 'gpt-4o-mini');
        assert.equal(completion.system_fingerprint, 'fp_fake');
        assert.deepEqual(completion.choices[0]?.message, {
          role: 'assistant',
          content: REPLY,
          refusal: null,
        });
        assert.equal(completion.choices[0]?.finish_reason, 'stop');
        assert.deepEqual(completion.usage, fakeUsage(messages));

        assert.equal(chatCalls(s.fake), before + 1);
        const upstream = lastChatCall(s.fake);
        assert.equal(upstream.path, '/v1/chat/completions');
        assert.equal(upstream.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
        assert.notEqual(upstream.headers.authorization, `Bearer ${s.apiKey}`, "the client's key stays here");
        assert.equal(upstream.body.stream, false);

        const row = await s.usageRow(requestId);
        const usage = fakeUsage(messages);
        assert.equal(row.user_id, s.userId);
        assert.equal(row.api_key_id, s.apiKeyId);
        assert.equal(row.model, 'gpt-4o-mini');
        assert.equal(row.provider, 'openai');
        assert.equal(row.deployment, 'openai/gpt-4o-mini');
        assert.equal(Number(row.prompt_tokens), usage.prompt_tokens);
        assert.equal(Number(row.completion_tokens), usage.completion_tokens);
        const cost = new PriceTable().cost('gpt-4o-mini', usage.prompt_tokens, usage.completion_tokens);
        assert.ok(cost > 0);
        assert.ok(Math.abs(Number(row.cost_usd) - cost) < 1e-12, `cost ${row.cost_usd}, expected ${cost}`);
        // Rounded to 1e-10 USD: no float noise (issue 19, item 18).
        assert.ok(
          Math.abs((usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.6) / 1e6 - cost) < 1e-12,
        );
        assert.equal(cost, Number(cost.toFixed(10)));
        assert.equal(row.status, 'ok');
        assert.equal(Number(row.retries), 0);
        assert.equal(Number(row.fallback), 0);
        assert.equal(Number(row.cached), 0);
        assert.ok(row.latency_ms !== null && Number(row.latency_ms) >= 0);
        assert.equal(row.ttft_ms, null);
      });

      it('relays an unknown model as the upstream 404, with its message, without retrying', async () => {
        const before = chatCalls(s.fake);
        const { res, body, requestId } = await c.json({ model: 'no-such-model', messages });
        const error = assertError(404, res, body, 'model_not_found');
        assert.equal(error.message, 'The model `no-such-model` does not exist');
        assert.equal(error.type, 'invalid_request_error');
        assert.equal(chatCalls(s.fake), before + 1);
        const streamed = await c.stream({ model: 'no-such-model', messages });
        assert.equal(streamed.res.headers.get('content-type')?.split(';')[0], 'application/json');
        assertError(404, streamed.res, JSON.parse(streamed.text), 'model_not_found');
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'error');
        // Never a string a client sent: the ledger (and its CSV exports) name only routed models.
        assert.equal(row.model, 'unrouted');
        assert.equal(Number(row.prompt_tokens), 0);
        const formula = await c.json({ model: "=2+5+cmd|' /C calc'!A0", messages });
        assertError(404, formula.res, formula.body, 'model_not_found');
        assert.equal((await s.usageRow(formula.requestId)).model, 'unrouted');
      });

      it('an error on a configured alias is ledgered under its name', async () => {
        s.fake.queue({ kind: 'status', status: 400 });
        const { res, body, requestId } = await c.json({ model: 'ha-model', messages });
        assert.equal(res.status, 400, JSON.stringify(body));
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'error');
        assert.equal(row.model, 'ha-model');
      });

      it('forwards fields it does not know, and every known one, untouched', async () => {
        const body = {
          model: 'gpt-4o-mini',
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: [{ type: 'text', text: 'One part only' }] },
            {
              role: 'user',
              content: [
                { type: 'text', text: 'What is this?' },
                { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } },
              ],
              name: 'alice',
            },
            {
              role: 'assistant',
              content: null,
              tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }],
            },
            { role: 'tool', tool_call_id: 'call_1', content: '42' },
          ],
          temperature: null,
          top_p: null,
          seed: null,
          n: 1,
          stop: ['END'],
          max_completion_tokens: 77,
          logit_bias: { '1234': -100 },
          logprobs: true,
          top_logprobs: 2,
          reasoning_effort: 'low',
          metadata: { team: 'qa', ticket: '7' },
          parallel_tool_calls: false,
          prediction: { type: 'content', content: 'x' },
          my_vendor_extension: { nested: [1, null, { deep: true }], flag: false },
          user: 'end-user-1',
        };
        const { res } = await c.json(body);
        assert.equal(res.status, 200);
        assert.deepEqual(lastChatCall(s.fake).body, { ...body, stream: false });

        const streamed = await c.stream(body);
        assert.equal(streamed.res.status, 200);
        assert.deepEqual(lastChatCall(s.fake).body, {
          ...body,
          stream: true,
          stream_options: { include_usage: true },
        });
      });

      it('completes an upstream answer that leaves out id, object, created and model', async () => {
        const choices = [
          { index: 0, message: { role: 'assistant', content: 'terse' }, finish_reason: 'stop' },
        ];
        s.fake.queue({ kind: 'status', status: 200, body: { choices } });
        const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200, JSON.stringify(body));
        const completion = body as Completion & { created: number };
        assert.equal(typeof completion.id, 'string');
        assert.equal(completion.object, 'chat.completion');
        assert.ok(Number.isInteger(completion.created));
        assert.equal(completion.model, 'gpt-4o-mini');
        assert.deepEqual(completion.choices, choices);
      });

      it('an upstream 200 that is not JSON is retried, then answered 502 upstream_bad_response', async () => {
        const before = chatCalls(s.fake);
        s.fake.queue({ kind: 'not-json' }, { kind: 'not-json' }, { kind: 'not-json' });
        const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 502, JSON.stringify(body));
        const { error } = body as { error: { code: string; message: string } };
        assert.equal(error.code, 'upstream_bad_response');
        assert.match(error.message, /not JSON: <html>/);
        assert.equal(chatCalls(s.fake), before + 3, '1 + 2 retries');
      });

      it('retries an upstream 500 and answers 200', async () => {
        const before = chatCalls(s.fake);
        s.fake.queue({ kind: 'status', status: 500 });
        const { res, body, requestId } = await c.json({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal((body as Completion).choices[0]?.message.content, REPLY);
        assert.equal(chatCalls(s.fake), before + 2);
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'ok');
        assert.equal(Number(row.retries), 1);
        assert.equal(Number(row.fallback), 0);
      });

      it('relays a 429 with its Retry-After once the retries (which honour it) are used up', async () => {
        const before = chatCalls(s.fake);
        s.fake.queue(
          ...Array.from({ length: 3 }, () => ({ kind: 'status' as const, status: 429, retryAfter: '1' })),
        );
        const started = performance.now();
        const { res, body, requestId } = await c.json({ model: 'gpt-4o-mini', messages });
        const elapsed = performance.now() - started;
        const error = assertError(429, res, body);
        assert.equal(res.headers.get('retry-after'), '1');
        assert.equal(error.message, 'injected 429');
        assert.equal(chatCalls(s.fake), before + 3, '1 + 2 retries');
        assert.ok(elapsed >= 1_900, `waited ${elapsed.toFixed(0)} ms for two Retry-After: 1`);
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'error');
      });

      it('answers 504 when the upstream hangs, within the first-token timeout of each attempt', async () => {
        const before = chatCalls(s.fake);
        s.fake.queue({ kind: 'hang' }, { kind: 'hang' }, { kind: 'hang' });
        const started = performance.now();
        const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
        const elapsed = performance.now() - started;
        // The upstream never answers: a 504 at all is its timeouts firing; at least three of them.
        assertError(504, res, body, 'upstream_timeout');
        assert.equal(chatCalls(s.fake), before + 3);
        assert.ok(elapsed >= 1_450, `3 attempts of 500 ms took ${elapsed.toFixed(0)} ms`);
      });
    });

    describe('streaming', () => {
      it('streams through OPENAI_BASE_URL, relays chunks as sent, hides the usage chunk unless asked', async () => {
        const before = chatCalls(s.fake);
        const { res, data, requestId } = await c.stream({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
        assert.equal(res.headers.get('x-colloquy-deployment'), 'openai/gpt-4o-mini');
        const { chunks, errors, text } = parseStream(data);
        assert.deepEqual(errors, []);
        assert.equal(text, REPLY);
        assert.ok(chunks.length >= WORDS.length, 'word by word, not buffered into one chunk');
        assert.ok(
          chunks.every(
            (chunk) => chunk.object === 'chat.completion.chunk' && chunk.system_fingerprint === 'fp_fake',
          ),
        );
        assert.ok(
          chunks.every((chunk) => chunk.choices.length === 1 && !chunk.usage),
          'no usage chunk',
        );
        assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, 'stop');
        // The upstream is always asked for usage, so it can be recorded.
        assert.equal(chatCalls(s.fake), before + 1);
        assert.deepEqual(lastChatCall(s.fake).body.stream_options, { include_usage: true });
        assert.equal(lastChatCall(s.fake).headers.authorization, `Bearer ${UPSTREAM_KEY}`);

        const row = await s.usageRow(requestId);
        const usage = fakeUsage(messages);
        assert.equal(row.status, 'ok');
        assert.equal(Number(row.prompt_tokens), usage.prompt_tokens);
        assert.equal(Number(row.completion_tokens), usage.completion_tokens);
        const cost = new PriceTable().cost('gpt-4o-mini', usage.prompt_tokens, usage.completion_tokens);
        assert.ok(Math.abs(Number(row.cost_usd) - cost) < 1e-12);
        assert.equal(row.api_key_id, s.apiKeyId);
        assert.ok(row.ttft_ms !== null && Number(row.ttft_ms) >= 0);
        assert.ok(row.latency_ms !== null && Number(row.latency_ms) >= Number(row.ttft_ms));
        assert.equal(Number(row.retries), 0);
      });

      it('sends the usage chunk, last before [DONE], when stream_options.include_usage is set', async () => {
        const { data } = await c.stream({
          model: 'gpt-4o-mini',
          messages,
          stream_options: { include_usage: true },
        });
        const { chunks, errors, text } = parseStream(data);
        assert.deepEqual(errors, []);
        assert.equal(text, REPLY);
        const withUsage = chunks.filter((chunk) => chunk.usage);
        assert.equal(withUsage.length, 1);
        assert.equal(chunks.at(-1), withUsage[0]);
        assert.deepEqual(withUsage[0]!.choices, []);
        assert.deepEqual(withUsage[0]!.usage, fakeUsage(messages));

        const off = await c.stream({
          model: 'gpt-4o-mini',
          messages,
          stream_options: { include_usage: false },
        });
        assert.equal(parseStream(off.data).chunks.filter((chunk) => chunk.usage).length, 0);
      });

      const midStream = [
        { name: 'a connection reset', fault: { kind: 'reset-after', chunks: 2 } },
        { name: 'an error event', fault: { kind: 'error-event', afterChunks: 2 } },
        { name: 'an end without a finish_reason or [DONE]', fault: { kind: 'no-done-unfinished' } },
        { name: 'a malformed chunk', fault: { kind: 'malformed-chunk' } },
        { name: 'chunks slower than the idle timeout', fault: { kind: 'drip', intervalMs: 600 } },
      ] as const;
      for (const { name, fault } of midStream) {
        it(`reports ${name} in-band, then [DONE]: never a silent truncation`, async () => {
          const before = chatCalls(s.fake);
          s.fake.queue(fault);
          const { res, data, requestId } = await c.stream({ model: 'gpt-4o-mini', messages });
          assert.equal(res.status, 200);
          const { events, errors, text } = parseStream(data);
          assert.equal(errors.length, 1, `one error event in ${JSON.stringify(data)}`);
          assert.ok('error' in events.at(-1)!, 'the error is the last event before [DONE]');
          const error = errors[0]!;
          assert.equal(typeof error.message, 'string');
          assert.equal(typeof error.code, 'string');
          assert.equal(typeof error.type, 'string');
          assert.ok(
            text.length < REPLY.length || fault.kind === 'no-done-unfinished',
            `partial text: ${text}`,
          );
          assert.ok(REPLY.startsWith(text));
          assert.equal(chatCalls(s.fake), before + 1, 'not retried once chunks were sent');
          const row = await s.usageRow(requestId);
          assert.equal(row.status, 'partial');
        });
      }

      it('completes a stream that finished (finish_reason, usage) and closed cleanly without [DONE]', async () => {
        s.fake.queue({ kind: 'no-done' });
        const { res, data, requestId } = await c.stream({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200);
        const { errors, text } = parseStream(data);
        assert.deepEqual(errors, [], JSON.stringify(data));
        assert.equal(text, REPLY);
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'ok');
      });

      it('retries a stream whose upstream answers 500 before the first chunk', async () => {
        const before = chatCalls(s.fake);
        s.fake.queue({ kind: 'status', status: 500 });
        const { res, data, requestId } = await c.stream({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200);
        assert.equal(parseStream(data).text, REPLY);
        assert.equal(chatCalls(s.fake), before + 2);
        const row = await s.usageRow(requestId);
        assert.equal(Number(row.retries), 1);
        assert.equal(row.status, 'ok');
      });

      it('answers 504 (not an event stream) when the upstream hangs, within the first-token timeout', async () => {
        const before = chatCalls(s.fake);
        const sockets = s.fake.openSockets();
        s.fake.queue({ kind: 'hang' }, { kind: 'hang' }, { kind: 'hang' });
        const started = performance.now();
        const { res, text } = await c.stream({ model: 'gpt-4o-mini', messages });
        const elapsed = performance.now() - started;
        // The upstream never answers: a 504 at all is its timeouts firing; at least three of them.
        assertError(504, res, JSON.parse(text), 'upstream_timeout');
        assert.equal(chatCalls(s.fake), before + 3);
        assert.ok(elapsed >= 1_450, `3 attempts of 500 ms took ${elapsed.toFixed(0)} ms`);
        await eventually(() => s.fake.openSockets() <= sockets, 1_000, 'hung upstream sockets closed');
      });

      it('closes the upstream connection when the client goes away, and keeps serving', async () => {
        s.fake.set({ chunkIntervalMs: 50, reply: Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ') });
        try {
          const baseline = s.fake.openSockets();
          const before = chatCalls(s.fake);
          const requestId = `abort-test-${dialect}-${Date.now()}`;
          await new Promise<void>((resolve, reject) => {
            const req = http.request(`${s.url}/v1/chat/completions`, {
              method: 'POST',
              headers: {
                authorization: `Bearer ${s.apiKey}`,
                'content-type': 'application/json',
                'x-request-id': requestId,
              },
            });
            req.on('error', () => {});
            req.on('response', (res) => {
              let seen = '';
              res.on('error', () => {});
              res.on('data', (chunk: Buffer) => {
                seen += chunk.toString();
                if (seen.includes('"content":"w1 "')) {
                  req.destroy();
                  resolve();
                }
              });
              res.on('end', () => reject(new Error('the stream ended before the client went away')));
            });
            req.end(JSON.stringify({ model: 'gpt-4o-mini', messages, stream: true }));
          });
          assert.equal(chatCalls(s.fake), before + 1);
          await eventually(() => s.fake.openSockets() <= baseline, 1_000, 'upstream socket closed');
          const row = await s.usageRow(requestId);
          assert.equal(row.status, 'cancelled');
        } finally {
          s.fake.set({ chunkIntervalMs: 0, reply: REPLY });
        }
        const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
        assert.equal(res.status, 200, 'still serving');
        assert.equal((body as Completion).choices[0]?.message.content, REPLY);
      });
    });

    describe('models and routing', () => {
      it('GET /v1/models lists the upstream models and the configured aliases', async () => {
        const res = await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${s.apiKey}` } });
        assert.equal(res.status, 200);
        const body = (await res.json()) as {
          object: string;
          data: { id: string; object: string; owned_by: string }[];
        };
        assert.equal(body.object, 'list');
        const byId = new Map(body.data.map((m) => [m.id, m]));
        assert.equal(byId.get('ha-model')?.owned_by, 'colloquy');
        assert.equal(byId.get('gpt-4o-mini')?.owned_by, 'openai');
        assert.equal(byId.get('gpt-4o')?.owned_by, 'openai');
        assert.ok(body.data.every((m) => m.object === 'model'));
        assert.equal(new Set(body.data.map((m) => m.id)).size, body.data.length);
        assert.ok(
          s.fake.requests.some(
            (r) => r.path === '/v1/models' && r.headers.authorization === `Bearer ${UPSTREAM_KEY}`,
          ),
        );

        const one = await fetch(`${s.url}/v1/models/ha-model`, {
          headers: { authorization: `Bearer ${s.apiKey}` },
        });
        assert.equal(one.status, 200);
        assert.deepEqual(await one.json(), {
          id: 'ha-model',
          object: 'model',
          created: 0,
          owned_by: 'colloquy',
          // Both deployments are `openai` providers: legacy completions pass through to them.
          endpoints: ['chat.completions', 'messages', 'responses', 'completions'],
        });
        const prefixed = await fetch(`${s.url}/v1/models/${encodeURIComponent('openai/gpt-4o')}`, {
          headers: { authorization: `Bearer ${s.apiKey}` },
        });
        assert.equal(prefixed.status, 200);
        assert.equal(((await prefixed.json()) as { owned_by: string }).owned_by, 'openai');
      });

      it('GET /v1/models/<unknown> is 404 model_not_found, in the OpenAI error shape', async () => {
        for (const name of ['no-such-model', 'openai/no-such-model', '=2+5']) {
          const res = await fetch(`${s.url}/v1/models/${encodeURIComponent(name)}`, {
            headers: { authorization: `Bearer ${s.apiKey}` },
          });
          const error = assertError(404, res, await res.json(), 'model_not_found');
          assert.equal(error.type, 'invalid_request_error');
          assert.equal(error.param, 'model');
        }
      });

      it('an alias falls back to its second deployment when the first fails (non-streaming)', async () => {
        const primary = chatCalls(s.fake);
        const backup = chatCalls(s.backup);
        s.fake.queue({ kind: 'status', status: 500 });
        const { res, body, requestId } = await c.json({ model: 'ha-model', messages });
        assert.equal(res.status, 200, JSON.stringify(body));
        assert.equal(res.headers.get('x-colloquy-deployment'), 'backup/gpt-4o-mini');
        assert.equal(chatCalls(s.fake), primary + 1);
        assert.equal(chatCalls(s.backup), backup + 1);
        assert.equal(lastChatCall(s.backup).body.model, 'gpt-4o-mini');
        assert.equal(lastChatCall(s.backup).headers.authorization, `Bearer ${UPSTREAM_KEY}`);
        const row = await s.usageRow(requestId);
        assert.equal(row.model, 'ha-model');
        assert.equal(row.provider, 'backup');
        assert.equal(row.deployment, 'backup/gpt-4o-mini');
        assert.equal(Number(row.fallback), 1);
        assert.equal(Number(row.retries), 1);
        assert.equal(row.status, 'ok');
        assert.ok(Number(row.cost_usd) > 0, 'priced by the upstream model');
      });

      it('an alias falls back to its second deployment when the first fails (streaming)', async () => {
        const backup = chatCalls(s.backup);
        s.fake.queue({ kind: 'status', status: 503 });
        const { res, data, requestId } = await c.stream({ model: 'ha-model', messages });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('x-colloquy-deployment'), 'backup/gpt-4o-mini');
        assert.equal(parseStream(data).text, REPLY);
        assert.equal(chatCalls(s.backup), backup + 1);
        const row = await s.usageRow(requestId);
        assert.equal(Number(row.fallback), 1);
        assert.equal(row.provider, 'backup');
        assert.ok(row.ttft_ms !== null);
      });

      it('the master key may call /v1 too (usage without a user)', async () => {
        const res = await fetch(`${s.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TEST_MASTER_KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages }),
        });
        assert.equal(res.status, 200);
        const row = await s.usageRow(res.headers.get('x-request-id')!);
        assert.equal(row.user_id, null);
        assert.equal(row.api_key_id, null);
      });
    });
  });
}

for (const dialect of DIALECTS) {
  // Their own stack, with the default upstream timeouts: the short ones above (a 300 ms gap between chunks)
  // pass between two chunks on a busy machine when the event loop stalls, under a flood or forty streams at
  // once, and would fail these streams for a reason they do not test.
  describe(`/v1 under load and with a client that stops reading (${dialect})`, () => {
    let s: ChatStack;
    const c = client(() => s);
    before(async () => {
      s = await startChatStack({ dialect, routing: null });
    });
    after(async () => {
      await s?.close();
    });

    it('serves many concurrent calls, streaming and not, each whole', async () => {
      const calls = Array.from({ length: 40 }, (_, i) =>
        i % 2
          ? c
              .json({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] })
              .then(({ res, body }) => {
                assert.equal(res.status, 200);
                return (body as Completion).choices[0]?.message.content;
              })
          : c
              .stream({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] })
              .then(({ res, data }) => {
                assert.equal(res.status, 200);
                const { errors, text } = parseStream(data);
                assert.deepEqual(errors, []);
                return text;
              }),
      );
      const texts = await Promise.all(calls);
      assert.ok(texts.every((text) => text === REPLY));
    });

    it('waits for a client that stopped reading, then cleans up when it goes away', async () => {
      // An upstream reply that never ends by itself, and a client that never reads: Colloquy must stop at
      // the socket buffers (waiting for 'drain', and so stop reading the upstream too) rather than buffer
      // the flood in memory or finish it. A reply of fixed size would not prove that: the kernel's buffers
      // on loopback hold about 4 MB (more on newer Node), so a stream that fits could finish unread.
      // Waiting is proved by events, not a timer: Colloquy's last write returned false with no 'drain'
      // since, and the upstream is waiting for Colloquy to read.
      const requestId = `slow-client-${dialect}-${Date.now()}`;
      const spy = spyOnResponse(s.t.app.server, requestId);
      const baseline = s.fake.openSockets();
      s.fake.queue({ kind: 'flood', maxChunks: 50_000 });
      const req = http.request(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${s.apiKey}`,
          'content-type': 'application/json',
          'x-request-id': requestId,
        },
      });
      try {
        req.on('error', () => {});
        req.on('response', (res) => res.pause());
        req.end(JSON.stringify({ model: 'gpt-4o-mini', messages, stream: true }));
        await eventually(
          () => spy.blocked && s.fake.waitingForDrain() > 0,
          60_000,
          'Colloquy waiting for its client, its upstream waiting for Colloquy',
        );
        req.destroy();
        const row = await s.usageRow(requestId);
        assert.equal(row.status, 'cancelled');
        assert.equal(spy.writesWhileBlocked, 0, 'Colloquy wrote again before the client drained');
        await eventually(() => s.fake.openSockets() <= baseline, 10_000, 'upstream socket closed');
      } finally {
        req.destroy();
        spy.stop();
      }
    });
  });
}

describe('/v1 timeouts and upstream credentials', () => {
  let s: ChatStack;
  const c = client(() => s);
  before(async () => {
    s = await startChatStack({
      routing: null,
      env: {
        UPSTREAM_RETRIES: '0',
        UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '5000',
        UPSTREAM_TOTAL_TIMEOUT_MS: '400',
      },
    });
  });
  after(async () => {
    await s?.close();
  });

  it('bounds the whole call by the total timeout: 504, not a cancelled request', async () => {
    s.fake.queue({ kind: 'hang' });
    const started = performance.now();
    const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
    const elapsed = performance.now() - started;
    // The upstream never answers: a 504 at all is the total timeout firing, and not before it was due.
    assertError(504, res, body, 'upstream_timeout');
    assert.ok(elapsed >= 380, `took ${elapsed.toFixed(0)} ms`);
  });

  it('a stream longer than the total timeout ends with an in-band timeout error', async () => {
    s.fake.queue({ kind: 'drip', intervalMs: 150 });
    const { res, data } = await c.stream({ model: 'gpt-4o-mini', messages });
    assert.equal(res.status, 200);
    const { errors } = parseStream(data);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'upstream_timeout');
  });

  it("an upstream rejecting Colloquy's own key is a 502, not a 401 telling the client its key is wrong", async () => {
    s.fake.set({ apiKey: 'some-other-key' });
    try {
      const { res, body } = await c.json({ model: 'gpt-4o-mini', messages });
      const error = assertError(502, res, body, 'upstream_auth_failed');
      assert.match(error.message, /Incorrect API key provided/);
      assert.equal(error.type, 'server_error');
    } finally {
      s.fake.set({ apiKey: UPSTREAM_KEY });
    }
  });
});

describe('/v1 with a first-token timeout much longer than the idle timeout', () => {
  let s: ChatStack;
  const c = client(() => s);
  before(async () => {
    s = await startChatStack({
      routing: null,
      env: {
        UPSTREAM_RETRIES: '2',
        UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: '3000',
        UPSTREAM_IDLE_TIMEOUT_MS: '200',
      },
    });
  });
  after(async () => {
    await s?.close();
  });

  it('waits for a first token slower than the idle gap (headers sent at once)', async () => {
    s.fake.queue({ kind: 'slow-first-token', delayMs: 1_500 });
    const { res, data } = await c.stream({ model: 'gpt-4o-mini', messages });
    assert.equal(res.status, 200);
    const { errors, text } = parseStream(data);
    assert.deepEqual(errors, []);
    assert.equal(text, REPLY);
    assert.equal(chatCalls(s.fake), 1, 'served by the first attempt, not a retry');
  });

  it('a client leaving a non-streaming call closes the upstream request too', async () => {
    s.fake.queue({ kind: 'slow-first-token', delayMs: 2_000 });
    const baseline = s.fake.openSockets();
    const requestId = `gone-${Date.now()}`;
    // The moment the upstream would answer, as an event: everything below must happen before it.
    let upstreamAnswered = false;
    const upstreamAnswers = setTimeout(() => {
      upstreamAnswered = true;
    }, 2_000);
    await new Promise<void>((resolve) => {
      const req = http.request(`${s.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${s.apiKey}`,
          'content-type': 'application/json',
          'x-request-id': requestId,
        },
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ model: 'gpt-4o-mini', messages }));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 200);
    });
    await eventually(() => s.fake.openSockets() <= baseline, 1_000, 'upstream socket closed');
    const row = await s.usageRow(requestId);
    assert.equal(row.status, 'cancelled');
    clearTimeout(upstreamAnswers);
    assert.equal(upstreamAnswered, false, 'the upstream request was closed before the upstream answered');
  });

  it('still cuts a stream whose gap between chunks exceeds the idle timeout', async () => {
    // The next chunk is due 5 s after the first: the cut (at 200 ms of silence) must come before it.
    s.fake.queue({ kind: 'drip', intervalMs: 5_000 });
    let nextChunkDue = false;
    const nextChunk = setTimeout(() => {
      nextChunkDue = true;
    }, 5_000);
    const { res, data } = await c.stream({ model: 'gpt-4o-mini', messages });
    clearTimeout(nextChunk);
    assert.equal(res.status, 200);
    const { errors } = parseStream(data);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'upstream_timeout');
    assert.match(errors[0]!.message, /gap between chunks/);
    assert.equal(nextChunkDue, false, 'cut at the idle timeout, not at the next chunk');
  });
});

describe('/v1 with no provider configured: the demo model', () => {
  let s: ChatStack;
  const c = client(() => s);
  before(async () => {
    s = await startChatStack({ upstream: false, routing: null });
  });
  after(async () => {
    await s?.close();
  });

  it('answers deterministically', async () => {
    const body = { model: 'demo', messages: [{ role: 'user', content: 'hello there' }] };
    const first = await c.json(body);
    const second = await c.json(body);
    assert.equal(first.res.status, 200);
    assert.equal(first.res.headers.get('x-colloquy-deployment'), 'demo/demo');
    const a = first.body as Completion;
    const b = second.body as Completion;
    assert.match(a.choices[0]?.message.content ?? '', /^\[demo\] You said: “hello there”\. /);
    assert.equal(a.choices[0]?.message.content, b.choices[0]?.message.content);
    assert.equal(a.model, 'demo');
    assert.ok(a.usage.completion_tokens > 0);
    const other = await c.json({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello there' }],
    });
    assert.equal(other.res.status, 200, 'any model name goes to the demo model');
    assert.equal((other.body as Completion).choices[0]?.message.content, a.choices[0]?.message.content);
    const row = await s.usageRow(first.requestId);
    assert.equal(row.provider, 'demo');
    assert.equal(Number(row.cost_usd), 0);
    assert.equal(Number(row.completion_tokens), a.usage.completion_tokens);
    assert.equal(s.fake.requests.length, 0);
  });

  it('streams word by word, the same text, with usage when asked', async () => {
    const body = { model: 'demo', messages: [{ role: 'user', content: 'hello there' }] };
    const whole = ((await c.json(body)).body as Completion).choices[0]?.message.content;
    const { res, data } = await c.stream({ ...body, stream_options: { include_usage: true } });
    assert.equal(res.status, 200);
    const { chunks, errors, text } = parseStream(data);
    assert.deepEqual(errors, []);
    assert.equal(text, whole);
    const words = chunks.map((chunk) => chunk.choices[0]?.delta.content).filter((w) => w);
    assert.ok(words.length > 5);
    assert.ok(
      words.every((w) => /^\S+\s*$/.test(w!)),
      'one word per chunk',
    );
    assert.ok(chunks.at(-1)?.usage && chunks.at(-1)!.usage!.completion_tokens > 0);
  });

  it('lists only the demo model', async () => {
    const res = await fetch(`${s.url}/v1/models`, { headers: { authorization: `Bearer ${s.apiKey}` } });
    const body = (await res.json()) as { data: { id: string }[] };
    assert.deepEqual(
      body.data.map((m) => m.id),
      ['demo'],
    );
  });
});
