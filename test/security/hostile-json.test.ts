import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { connectWs } from '../../src/features/conversations/testing/ws-client.js';
import { bearer, TEST_MASTER_KEY } from '../helpers/app.js';
import { type ChatStack, defaultRouting, sseData, startChatStack } from '../helpers/chat-stack.js';

/**
 * Hostile JSON (issue 18 part 2): deep nesting, very wide objects, huge arrays and long strings, in every
 * place a client can put them, on every route, streaming or not, cached or not, to an OpenAI-compatible
 * upstream (pass-through), an Anthropic one (translation) and the demo model — and in WebSocket frames.
 * Every case answers 4xx or is served; none answers 5xx, logs an error, or breaks a stream with an
 * internal error. Values are built as JSON text: a 5,000-deep value would overflow this test's own
 * JSON.stringify.
 */
const deepArrays = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
const deepObjects = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
const deepMixed = (n: number) => `${'{"a":['.repeat(n)}${']}'.repeat(n)}`;
const wideObject = (keys: number) => `{${Array.from({ length: keys }, (_, i) => `"k${i}":${i}`).join(',')}}`;
const hugeArray = (items: number) => `[${Array.from({ length: items }, () => '0').join(',')}]`;
const longString = (chars: number) => JSON.stringify('x'.repeat(chars));

/** Raw JSON texts; the first ones (within the limits) must be served when placed where any JSON may go. */
const HOSTILE: Record<string, string> = {
  'deep arrays 60': deepArrays(60),
  'deep arrays 65': deepArrays(65),
  'deep arrays 5000': deepArrays(5_000),
  'deep objects 5000': deepObjects(5_000),
  'deep mixed 3000': deepMixed(3_000),
  'wide object 1001 keys': wideObject(1_001),
  'wide object 40000 keys': wideObject(40_000),
  'array of 10001': hugeArray(10_001),
  'array of 200000': hugeArray(200_000),
  'string of 600000': longString(600_000),
};

/** Where a value goes in a chat request; `@` is replaced by the raw JSON text. */
const PLACES: Record<string, string> = {
  'pass-through field': '{"model":"$M","messages":[{"role":"user","content":"hi"}],"x":@}',
  'content part field':
    '{"model":"$M","messages":[{"role":"user","content":[{"type":"text","text":"hi","extra":@}]}]}',
  'content parts': '{"model":"$M","messages":[{"role":"user","content":@}]}',
  'message field': '{"model":"$M","messages":[{"role":"user","content":"hi","meta":@}]}',
  messages: '{"model":"$M","messages":@}',
  'tool definition':
    '{"model":"$M","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":@}}]}',
  tools: '{"model":"$M","messages":[{"role":"user","content":"hi"}],"tools":@}',
  'tool call':
    '{"model":"$M","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"},"x":@}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}',
  'response_format schema':
    '{"model":"$M","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":@}}}',
  tool_choice: '{"model":"$M","messages":[{"role":"user","content":"hi"}],"tool_choice":@}',
  stream_options:
    '{"model":"$M","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true,"x":@}}',
  metadata: '{"model":"$M","messages":[{"role":"user","content":"hi"}],"metadata":@}',
  stop: '{"model":"$M","messages":[{"role":"user","content":"hi"}],"stop":@}',
  user: '{"model":"$M","messages":[{"role":"user","content":"hi"}],"user":@}',
  model: '{"model":@,"messages":[{"role":"user","content":"hi"}]}',
  'message content': '{"model":"$M","messages":[{"role":"user","content":@}]}',
  'message name': '{"model":"$M","messages":[{"role":"user","content":"hi","name":@}]}',
  'top level': '@',
};

/** Client JSON inside a string: tool call arguments, parsed when translated for Anthropic. */
const STRING_PLACES: Record<string, string> = {
  'tool call arguments':
    '{"model":"$M","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":@}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}',
};

const MODELS = ['gpt-4o-mini', 'claude-model', 'ha-model'];
const figures = { requests: 0, served: 0, refused: 0, byStatus: {} as Record<number, number> };

/** A fake Anthropic upstream answering every call with the published example message or stream. */
async function fakeAnthropic() {
  const fixtures = new URL('../../src/providers/anthropic/fixtures/', import.meta.url);
  const message = readFileSync(new URL('message-text.json', fixtures), 'utf8');
  const stream = readFileSync(new URL('stream-text.sse', fixtures), 'utf8');
  const server = http.createServer(async (req, res) => {
    let text = '';
    for await (const chunk of req) text += chunk;
    if (/"stream"\s*:\s*true/.test(text)) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(stream);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(message);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('hostile JSON', () => {
  let s: ChatStack;
  let anthropic: Awaited<ReturnType<typeof fakeAnthropic>>;
  before(async () => {
    anthropic = await fakeAnthropic();
    s = await startChatStack({
      env: { RESPONSE_CACHE_TTL_SECONDS: '60', MAX_BODY_SIZE: String(2 * 1024 * 1024) },
      routing: (backupUrl) => {
        const routing = defaultRouting(backupUrl);
        routing.providers = [
          ...(routing.providers ?? []),
          { name: 'claude', type: 'anthropic', base_url: anthropic.url },
        ];
        routing.models = [
          ...(routing.models ?? []),
          { name: 'claude-model', deployments: [{ provider: 'claude', model: 'claude-3-5-haiku-latest' }] },
        ];
        return routing;
      },
    });
  });
  after(async () => {
    await s?.close();
    await anthropic?.close();
    console.log(`# hostile JSON figures: ${JSON.stringify(figures)}`);
  });

  async function chat(body: string, options: { stream: boolean; cache: boolean }) {
    const payload = options.stream ? body.replace(/^\{/, '{"stream":true,') : body;
    const res = await s.t.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: {
        ...bearer(s.apiKey),
        'content-type': 'application/json',
        ...(options.cache ? { 'x-colloquy-cache': 'on' } : { 'cache-control': 'no-store' }),
      },
      payload,
    });
    figures.requests++;
    figures.byStatus[res.statusCode] = (figures.byStatus[res.statusCode] ?? 0) + 1;
    if (res.statusCode < 400) figures.served++;
    else figures.refused++;
    return res;
  }

  function assertHandled(res: Awaited<ReturnType<typeof chat>>, what: string) {
    assert.ok(res.statusCode < 500, `${what} → ${res.statusCode} ${res.body.slice(0, 300)}`);
    if (res.statusCode >= 400) {
      const code = (res.json() as { error: { code: string } }).error.code;
      assert.ok(code && code !== 'internal_error', `${what} → ${res.body.slice(0, 300)}`);
    }
    if (res.statusCode === 200 && res.headers['content-type']?.toString().startsWith('text/event-stream')) {
      const data = sseData(res.body);
      assert.equal(data.at(-1), '[DONE]', `${what}: the stream ended without [DONE]`);
      for (const d of data.slice(0, -1)) {
        const error = (JSON.parse(d) as { error?: { code?: string } }).error;
        assert.ok(error?.code !== 'internal_error', `${what}: in-band ${d.slice(0, 300)}`);
      }
    }
  }

  const fill = (template: string, model: string, value: string) =>
    template.replace('$M', model).replace('@', () => value);

  it('the reported case: 5,000 nested arrays in an unknown field → 400 invalid_request, on every model', async () => {
    for (const model of MODELS)
      for (const stream of [false, true])
        for (const cache of [false, true]) {
          const res = await chat(fill(PLACES['pass-through field']!, model, deepArrays(5_000)), {
            stream,
            cache,
          });
          assert.equal(res.statusCode, 400, `${model} stream=${stream} cache=${cache}: ${res.body}`);
          const error = (res.json() as { error: { code: string; message: string } }).error;
          assert.equal(error.code, 'invalid_request');
          assert.match(error.message, /nesting deeper than 64/);
        }
  });

  it('every place × every hostile value × model × stream × cache: 4xx or served, never 5xx', async () => {
    for (const [place, template] of Object.entries(PLACES))
      for (const [name, value] of Object.entries(HOSTILE))
        for (const model of MODELS)
          for (const stream of [false, true]) {
            // The cache is a per-request choice: alternate it, so each value meets both paths across models.
            const cache = (MODELS.indexOf(model) + (stream ? 1 : 0)) % 2 === 0;
            const res = await chat(fill(template, model, value), { stream, cache });
            assertHandled(res, `${place} = ${name}, ${model}, stream=${stream}, cache=${cache}`);
          }
  });

  it('within the limits, JSON 50 deep where any JSON may go is served (pass-through and translated)', async () => {
    for (const place of ['pass-through field', 'content part field', 'tool definition', 'metadata'])
      for (const model of MODELS) {
        const res = await chat(fill(PLACES[place]!, model, deepObjects(50)), { stream: false, cache: true });
        assert.equal(res.statusCode, 200, `${place} on ${model}: ${res.body.slice(0, 300)}`);
      }
  });

  it('JSON inside strings (tool call arguments) is bounded too: 4xx when translated, never 5xx', async () => {
    for (const [place, template] of Object.entries(STRING_PLACES))
      for (const [name, value] of Object.entries(HOSTILE))
        for (const model of MODELS)
          for (const stream of [false, true]) {
            const res = await chat(fill(template, model, JSON.stringify(value)), { stream, cache: stream });
            assertHandled(res, `${place} = ${name}, ${model}, stream=${stream}`);
          }
    const deep = fill(
      STRING_PLACES['tool call arguments']!,
      'claude-model',
      JSON.stringify(deepObjects(5_000)),
    );
    const res = await chat(deep, { stream: false, cache: false });
    assert.equal(res.statusCode, 400, res.body);
    assert.match(res.body, /nesting deeper than 64/);
  });

  it('generated combinations (fast-check): any value of any shape anywhere → never 5xx', async () => {
    const value = fc.oneof(
      fc.constantFrom(...Object.values(HOSTILE)),
      fc.integer({ min: 1, max: 6_000 }).map(deepArrays),
      fc.integer({ min: 1, max: 6_000 }).map(deepObjects),
      fc.integer({ min: 1, max: 3_000 }).map(deepMixed),
      fc.integer({ min: 0, max: 3_000 }).map(wideObject),
      fc.integer({ min: 0, max: 30_000 }).map(hugeArray),
      fc.integer({ min: 0, max: 300_000 }).map(longString),
      fc.jsonValue({ maxDepth: 6 }).map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...Object.entries(PLACES)),
        value,
        fc.constantFrom(...MODELS),
        fc.boolean(),
        fc.boolean(),
        async ([place, template], raw, model, stream, cache) => {
          const res = await chat(fill(template, model, raw), { stream, cache });
          assertHandled(res, `${place} = ${raw.slice(0, 40)}… (${raw.length} B), ${model}, stream=${stream}`);
        },
      ),
      { numRuns: 150, seed: 181818 },
    );
  });

  it('every other route with a body: hostile values in each of its fields and as the body → 4xx', async () => {
    const doc = (await s.t.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<
        string,
        Record<string, { requestBody?: { content?: Record<string, { schema?: { properties?: object } }> } }>
      >;
    };
    const conversation = await s.t.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(TEST_MASTER_KEY),
      payload: {},
    });
    const id = conversation.statusCode === 201 ? (conversation.json() as { id: string }).id : 'x';
    let routes = 0;
    for (const [p, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops)) {
        if (!['post', 'put', 'patch'].includes(method) || p === '/v1/chat/completions') continue;
        routes++;
        const fields = Object.keys(op.requestBody?.content?.['application/json']?.schema?.properties ?? {});
        const url = p.replace(/\{[^}]+\}/g, id);
        for (const [name, value] of Object.entries(HOSTILE))
          for (const field of [...fields, 'unknown_field', '']) {
            const payload = field === '' ? value : `{${JSON.stringify(field)}:${value}}`;
            for (const token of [TEST_MASTER_KEY, s.apiKey]) {
              const res = await s.t.inject({
                method: method.toUpperCase() as 'POST',
                url,
                headers: { ...bearer(token), 'content-type': 'application/json' },
                payload,
              });
              figures.requests++;
              assert.ok(
                res.statusCode < 500,
                `${method} ${p} ${field || 'body'} = ${name} → ${res.statusCode} ${res.body.slice(0, 200)}`,
              );
            }
          }
      }
    assert.ok(routes > 10, `only ${routes} routes with a body`);
  });

  it('WebSocket frames: hostile frames are rejected with a 4xx code and the socket keeps working', async () => {
    const user = await s.t.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(s.apiKey),
      payload: { title: 'ws' },
    });
    const id = (user.json() as { id: string }).id;
    const ws = await connectWs(
      `${s.url.replace('http', 'ws')}/api/conversations/${id}/ws?token=${encodeURIComponent(s.apiKey)}`,
    );
    try {
      const frames = [
        ...Object.values(HOSTILE).filter((v) => v.length < 1_000_000),
        ...Object.values(HOSTILE)
          .filter((v) => v.length < 1_000_000)
          .flatMap((v) => [
            `{"type":"send","content":${v}}`,
            `{"type":"send","content":"hi","model":${v}}`,
            `{"type":"cancel","generation_id":${v}}`,
            `{"type":"ping","x":${v}}`,
            `{"type":${v}}`,
          ]),
      ];
      let pongs = 0;
      for (const [i, frame] of frames.entries()) {
        const before = ws.frames.length;
        ws.socket.send(frame);
        ws.socket.send(JSON.stringify({ type: 'ping' }));
        // The ping is answered after the frame: once its pong arrives, the frame was handled.
        await ws.waitFor(() => ws.frames.filter((f) => f.type === 'pong').length > pongs, 10_000);
        pongs++;
        for (const f of ws.frames.slice(before))
          if (f.type === 'rejected')
            assert.notEqual(
              f.error?.code,
              'internal_error',
              `frame ${i}: ${JSON.stringify(f).slice(0, 300)}`,
            );
      }
      const deep = ws.frames.find(
        (f) => f.type === 'rejected' && /nesting deeper than 64/.test(f.error?.message),
      );
      assert.ok(deep, 'a 5,000-deep frame is rejected for its nesting');
      assert.equal(ws.socket.readyState, 1, 'the socket is still open');
    } finally {
      await ws.close();
    }
  });

  it('nothing logged an error (no RangeError, no "request failed")', () => {
    const errors = s.t
      .logLines()
      .filter((l) => Number(l.level) >= 50)
      .map((l) => JSON.stringify(l).slice(0, 400));
    assert.deepEqual(errors, []);
  });
});
