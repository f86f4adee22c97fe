import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import pino from 'pino';
import { markSuiteRan } from '../../test/helpers/databases.js';
import { freePort } from '../../test/helpers/net.js';
import { lockRedisTests } from '../../test/helpers/redis-lock.js';
import { createRedis } from '../core/redis.js';
import type { RouteInfo } from '../providers/router/types.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  StreamEvent,
} from '../providers/types.js';
import { type Cache, escapeGlob } from './cache.js';
import { MemoryCache } from './memory-cache.js';
import { RedisCache } from './redis-cache.js';
import {
  type CacheLookupEvent,
  canonicalJson,
  isCacheable,
  ResponseCache,
  type ResponseCacheOptions,
} from './response-cache.js';

const REDIS_URL = process.env.TEST_REDIS_URL;
const RUN_PREFIX = `colloquy:test:${randomBytes(6).toString('hex')}:`;
const silent = pino({ level: 'silent' });

const ROUTE: RouteInfo = {
  requestedModel: 'gpt-4o-mini',
  provider: 'openai',
  deployment: 'openai/gpt-4o-mini-2024-07-18',
  upstreamModel: 'gpt-4o-mini-2024-07-18',
  attempts: 2,
  fallback: true,
};

const request = (overrides: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest => ({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'What is the capital of France?' },
  ],
  temperature: 0,
  ...overrides,
});

function completion(overrides: Partial<ChatCompletion['choices'][number]> = {}, extra = {}): ChatCompletion {
  return {
    id: 'chatcmpl-abc',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'Paris.', refusal: null },
        finish_reason: 'stop',
        logprobs: null,
        ...overrides,
      },
    ],
    usage: { prompt_tokens: 20, completion_tokens: 2, total_tokens: 22 },
    system_fingerprint: 'fp_1',
    ...extra,
  };
}

/** Chunks the way an upstream sends them: raw text with its own spacing, usage last with no choices. */
function upstreamStream(
  pieces: string[],
  finish: ChatCompletionChunk['choices'][number]['finish_reason'] = 'stop',
) {
  const base = {
    id: 'chatcmpl-s1',
    object: 'chat.completion.chunk' as const,
    created: 1_700_000_001,
    model: 'm',
  };
  const chunks: ChatCompletionChunk[] = [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
    ...pieces.map((content) => ({
      ...base,
      choices: [{ index: 0, delta: { content }, finish_reason: null }],
    })),
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] },
    {
      ...base,
      choices: [],
      usage: { prompt_tokens: 9, completion_tokens: pieces.length, total_tokens: 9 + pieces.length },
    },
  ];
  return chunks.map(
    (chunk): StreamEvent => ({ chunk, raw: JSON.stringify(chunk, null, 1).replace(/\n/g, ' ') }),
  );
}

async function collect(events: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

const memory = () => new MemoryCache({ maxEntries: 1000, maxBytes: 4 * 1024 * 1024 });

const textOf = (events: StreamEvent[]) => events.map((e) => e.chunk.choices[0]?.delta.content ?? '').join('');

describe('isCacheable', () => {
  it('takes explicit temperature 0 or an opt-in, and one choice only', () => {
    assert.equal(isCacheable(request()), true);
    assert.equal(isCacheable(request({ temperature: undefined })), false, 'absent is not deterministic');
    assert.equal(isCacheable(request({ temperature: null })), false);
    assert.equal(isCacheable(request({ temperature: 0.7 })), false);
    assert.equal(isCacheable(request({ temperature: 0.7 }), { optIn: true }), true);
    assert.equal(isCacheable(request({ temperature: undefined }), { optIn: true }), true);
    assert.equal(isCacheable(request({ n: 1 })), true);
    assert.equal(isCacheable(request({ n: null })), true);
    assert.equal(isCacheable(request({ n: 2 })), false);
    assert.equal(isCacheable(request({ n: 2 }), { optIn: true }), false, 'never several choices');
    const tools = [{ type: 'function' as const, function: { name: 'weather' } }];
    assert.equal(isCacheable(request({ tools })), true, 'tool-call answers are refused when storing instead');
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth and keeps array order', () => {
    assert.equal(
      canonicalJson({ b: 1, a: [{ d: 1, c: undefined, e: null }, 2] }),
      '{"a":[{"d":1,"e":null},2],"b":1}',
    );
    assert.equal(canonicalJson([undefined, 'x']), '[null,"x"]');
  });
});

describe('ResponseCache keys', () => {
  const responses = new ResponseCache(memory());
  const scope = 'user:usr_1' as const;

  it('ignore key order, transport fields and end-user ids', () => {
    const key = responses.key(scope, request());
    assert.match(key, /^responses:user:usr_1:[0-9a-f]{64}$/);
    const reordered = {
      temperature: 0,
      messages: [
        { content: 'Be brief.', role: 'system' as const },
        { content: 'What is the capital of France?', role: 'user' as const },
      ],
      model: 'gpt-4o-mini',
    };
    assert.equal(responses.key(scope, reordered), key);
    for (const same of [
      request({ stream: true }),
      request({ stream: false, stream_options: { include_usage: true } }),
      request({ user: 'end-user-42' }),
      request({ n: 1 }),
      request({ top_p: null }),
      request({ metadata: { trace: 'x' } }),
    ]) {
      assert.equal(responses.key(scope, same), key, JSON.stringify(same).slice(0, 120));
    }
    const schema = (a: object) => ({ type: 'json_schema', json_schema: { name: 's', schema: a } });
    assert.equal(
      responses.key(scope, request({ response_format: schema({ type: 'object', properties: { a: 1 } }) })),
      responses.key(scope, request({ response_format: schema({ properties: { a: 1 }, type: 'object' }) })),
    );
  });

  it('change with anything that changes the answer', () => {
    const key = responses.key(scope, request());
    const different = [
      request({ temperature: 0.2 }),
      request({ temperature: undefined }),
      request({ model: 'gpt-4o' }),
      request({ messages: [{ role: 'user', content: 'What is the capital of Spain?' }] }),
      request({ messages: [...request().messages].reverse() }),
      request({ top_p: 0.5 }),
      request({ max_tokens: 10 }),
      request({ max_completion_tokens: 10 }),
      request({ stop: ['\n'] }),
      request({ seed: 7 }),
      request({ response_format: { type: 'json_object' } }),
      request({ tools: [{ type: 'function', function: { name: 'weather' } }] }),
      request({ reasoning_effort: 'low' }), // unknown to Colloquy: kept, to be safe
    ];
    const keys = new Set(different.map((r) => responses.key(scope, r)));
    assert.equal(keys.size, different.length, 'all distinct');
    assert.ok(!keys.has(key));
  });

  it('are per tenant, and a salt or extra ignored fields can be configured', () => {
    const body = request();
    const keys = new Set([
      responses.key('user:usr_1', body),
      responses.key('user:usr_2', body),
      responses.key('key:usr_1', body),
      responses.key('shared:docs', body),
      new ResponseCache(memory(), { salt: 'routing-v2' }).key('user:usr_1', body),
    ]);
    assert.equal(keys.size, 5);
    const lenient = new ResponseCache(memory(), { ignoreFields: ['colloquy_cache'] });
    assert.equal(lenient.key(scope, request({ colloquy_cache: true })), responses.key(scope, request()));
    for (const bad of ['user:a:b', 'user:*', 'team:x', 'user:', 'key:a b']) {
      assert.throws(() => responses.key(bad as never, body), TypeError, bad);
    }
  });
});

const stores: { name: string; skip: string | false; make: () => Cache; cleanup?: () => Promise<void> }[] = [
  { name: 'memory', skip: false, make: () => memory() },
];

let redis: Redis | undefined;
let releaseLock: () => void = () => {};
let prefixes = 0;
stores.push({
  name: 'redis',
  skip: REDIS_URL ? false : 'TEST_REDIS_URL not set: Redis response cache suite skipped',
  make: () => new RedisCache({ redis: redis!, logger: silent, prefix: `${RUN_PREFIX}${++prefixes}:` }),
});

for (const store of stores) {
  describe(`ResponseCache on ${store.name}`, { skip: store.skip }, () => {
    const make = (options: ResponseCacheOptions = {}) => {
      const cache = store.make();
      return { cache, responses: new ResponseCache(cache, options) };
    };

    if (store.name === 'redis') {
      before(async () => {
        markSuiteRan('redis');
        releaseLock = await lockRedisTests(REDIS_URL!);
        redis = createRedis(REDIS_URL!, silent);
        await until(() => redis!.status === 'ready', 5_000);
      });
      after(async () => {
        try {
          if (redis) await deleteByPrefix(redis, RUN_PREFIX);
        } finally {
          redis?.disconnect();
          releaseLock();
        }
      });
    }

    it('serves a stored completion to the same tenant only, and reports hits and misses', async () => {
      const lookups: CacheLookupEvent[] = [];
      const { responses } = make({ onLookup: (e) => lookups.push(e) });
      const mine = responses.key('key:key_1', request());
      const theirs = responses.key('key:key_2', request());
      assert.equal(await responses.getCompletion(mine), undefined);
      assert.equal(await responses.putCompletion(mine, completion(), { route: ROUTE }), true);
      const hit = await responses.getCompletion(mine);
      assert.ok(hit);
      assert.deepEqual(hit.completion, completion());
      assert.deepEqual(hit.usage, { prompt_tokens: 20, completion_tokens: 2, total_tokens: 22 });
      assert.deepEqual(hit.route, { ...ROUTE, attempts: 1, fallback: false });
      assert.equal(hit.storedForm, 'completion');
      assert.ok(Math.abs(hit.storedAt - Date.now()) < 5_000);
      assert.equal(await responses.getCompletion(theirs), undefined, 'another tenant misses');
      assert.deepEqual(
        lookups.map((l) => [l.result, l.form]),
        [
          ['miss', 'completion'],
          ['hit', 'completion'],
          ['miss', 'completion'],
        ],
      );
      assert.equal(lookups[1]?.usage?.total_tokens, 22);
      assert.equal(lookups[1]?.route?.upstreamModel, ROUTE.upstreamModel);
    });

    it('never stores errors, tool calls or unfinished answers', async () => {
      const { responses } = make();
      const key = responses.key('user:u', request());
      const toolCall = {
        id: 'call_1',
        type: 'function' as const,
        function: { name: 'weather', arguments: '{}' },
      };
      const refused: [string, ChatCompletion, number?][] = [
        ['a 5xx', completion(), 502],
        ['a 4xx', completion(), 400],
        [
          'tool calls',
          completion({
            message: { role: 'assistant', content: null, tool_calls: [toolCall] },
            finish_reason: 'tool_calls',
          }),
        ],
        [
          'tool calls with stop',
          completion({ message: { role: 'assistant', content: 'x', tool_calls: [toolCall] } }),
        ],
        ['content filter', completion({ finish_reason: 'content_filter' })],
        ['finish error', completion({ finish_reason: 'error' })],
        ['no finish', completion({ finish_reason: null })],
        ['no content', completion({ message: { role: 'assistant', content: null } })],
        ['an error body', completion({}, { error: { message: 'boom' } })],
        [
          'several choices',
          { ...completion(), choices: [completion().choices[0]!, { ...completion().choices[0]!, index: 1 }] },
        ],
      ];
      for (const [what, body, status] of refused) {
        assert.equal(await responses.putCompletion(key, body, { status }), false, what);
        assert.equal(await responses.getCompletion(key), undefined, what);
      }
      assert.equal(await responses.putCompletion(key, completion({ finish_reason: 'length' })), true);
    });

    it('records a stream and replays the same chunks, raw text and order', async () => {
      const lookups: CacheLookupEvent[] = [];
      const { responses } = make({ onLookup: (e) => lookups.push(e) });
      const key = responses.key('user:u', request({ stream: true }));
      const events = upstreamStream(['The ', 'capital ', 'is ', 'Paris.']);
      const recorder = responses.recorder(key, { route: ROUTE });
      for (const event of events) recorder.record(event);
      assert.equal(await recorder.commit(), true);
      assert.equal(recorder.state, 'committed');
      assert.equal(await recorder.commit(), false, 'once');

      const cached = await responses.replay(key);
      assert.ok(cached);
      assert.equal(cached.storedForm, 'stream');
      assert.deepEqual(cached.route, { ...ROUTE, attempts: 1, fallback: false });
      const replayed = await collect(cached.events);
      assert.deepEqual(
        replayed.map((e) => e.raw),
        events.map((e) => e.raw),
        'verbatim raw text, in order',
      );
      assert.deepEqual(
        replayed.map((e) => e.chunk),
        events.map((e) => e.chunk),
      );
      assert.equal(textOf(replayed), 'The capital is Paris.');
      assert.deepEqual(cached.usage, { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
      assert.deepEqual(lookups.at(-1), {
        result: 'hit',
        form: 'stream',
        storedForm: 'stream',
        usage: cached.usage,
        route: cached.route,
      });

      // The same key serves the non-streamed form too: the stream folded into a completion.
      const asCompletion = await responses.getCompletion(key);
      assert.ok(asCompletion);
      assert.equal(asCompletion.storedForm, 'stream');
      const choice = asCompletion.completion.choices[0]!;
      assert.equal(choice.message.content, 'The capital is Paris.');
      assert.equal(choice.finish_reason, 'stop');
      assert.equal(asCompletion.completion.id, 'chatcmpl-s1');
      assert.equal(asCompletion.completion.object, 'chat.completion');
      assert.deepEqual(asCompletion.usage, cached.usage);
    });

    it('replays a stored completion as a stream', async () => {
      const { responses } = make();
      const key = responses.key('user:u', request());
      await responses.putCompletion(key, completion());
      const cached = await responses.replay(key);
      assert.ok(cached);
      assert.equal(cached.storedForm, 'completion');
      const events = await collect(cached.events);
      assert.equal(textOf(events), 'Paris.');
      assert.deepEqual(events[0]?.chunk.choices[0]?.delta, { role: 'assistant', content: '' });
      const finishes = events.flatMap((e) => e.chunk.choices.map((c) => c.finish_reason)).filter(Boolean);
      assert.deepEqual(finishes, ['stop']);
      const last = events.at(-1)!.chunk;
      assert.deepEqual(last.choices, []);
      assert.deepEqual(last.usage, completion().usage);
      for (const event of events) {
        assert.equal(event.chunk.object, 'chat.completion.chunk');
        assert.equal(event.chunk.id, 'chatcmpl-abc');
        assert.deepEqual(JSON.parse(event.raw!), event.chunk, 'raw is the chunk');
      }
      assert.deepEqual(cached.usage, completion().usage);
    });

    it('never stores partial, errored, cancelled or tool-calling streams', async () => {
      const { responses } = make();
      const key = responses.key('user:u', request({ stream: true }));
      const cases: [string, (rec: ReturnType<ResponseCache['recorder']>) => void][] = [
        [
          'cut before finish_reason',
          (rec) => {
            for (const e of upstreamStream(['a', 'b']).slice(0, 3)) rec.record(e);
          },
        ],
        [
          'errored midway',
          (rec) => {
            for (const e of upstreamStream(['a', 'b']).slice(0, 2)) rec.record(e);
            rec.fail('upstream reset');
          },
        ],
        [
          'failed after finishing',
          (rec) => {
            for (const e of upstreamStream(['a'])) rec.record(e);
            rec.fail('client went away');
          },
        ],
        [
          'finish tool_calls',
          (rec) => {
            for (const e of upstreamStream(['a'], 'tool_calls')) rec.record(e);
          },
        ],
        [
          'finish content_filter',
          (rec) => {
            for (const e of upstreamStream(['a'], 'content_filter')) rec.record(e);
          },
        ],
        [
          'tool call deltas',
          (rec) => {
            const events = upstreamStream(['a']);
            const chunk = structuredClone(events[1]!.chunk);
            chunk.choices[0]!.delta = {
              tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '' } }],
            };
            events.splice(1, 1, { chunk });
            for (const e of events) rec.record(e);
          },
        ],
        [
          'an in-band error chunk',
          (rec) => {
            const events = upstreamStream(['a']);
            events.splice(2, 0, { chunk: { error: { message: 'overloaded' } } as never });
            for (const e of events) rec.record(e);
          },
        ],
        [
          'a second choice',
          (rec) => {
            const events = upstreamStream(['a']);
            const chunk = structuredClone(events[1]!.chunk);
            chunk.choices[0]!.index = 1;
            events.push({ chunk });
            for (const e of events) rec.record(e);
          },
        ],
        ['nothing at all', () => {}],
      ];
      for (const [what, feed] of cases) {
        const recorder = responses.recorder(key);
        feed(recorder);
        assert.equal(await recorder.commit(), false, what);
        assert.equal(recorder.state, 'rejected', what);
        assert.ok(recorder.reason, what);
        assert.equal(await responses.replay(key), undefined, what);
      }
    });

    it('stores a stream too large for the store nowhere', async () => {
      const cache =
        store.name === 'memory'
          ? new MemoryCache({ maxEntries: 10, maxBytes: 10_000, maxEntryBytes: 2_000 })
          : store.make();
      const responses = new ResponseCache(cache);
      const key = responses.key('user:u', request());
      const recorder = responses.recorder(key);
      const pieces = Array.from({ length: cache.maxEntryBytes / 100 + 10 }, () => 'x'.repeat(100));
      for (const event of upstreamStream(pieces)) recorder.record(event);
      assert.equal(await recorder.commit(), false);
      assert.equal(recorder.reason, 'too large');
    });

    it('re-serialises raw chunks that span lines, keeping the content', async () => {
      const { responses } = make();
      const key = responses.key('user:u', request());
      const events = upstreamStream(['multi\nline']).map((e) => ({
        chunk: e.chunk,
        raw: JSON.stringify(e.chunk, null, 2),
      }));
      const recorder = responses.recorder(key);
      for (const event of events) recorder.record(event);
      assert.equal(await recorder.commit(), true);
      const replayed = await collect((await responses.replay(key))!.events);
      assert.deepEqual(
        replayed.map((e) => e.chunk),
        events.map((e) => e.chunk),
      );
      assert.equal(textOf(replayed), 'multi\nline');
    });

    it('expires answers after the TTL, drops unreadable entries and whole tenants', async () => {
      // A TTL long enough that the entry is still there when read back on a stalled, busy machine; then its
      // expiry is awaited (bounded), not assumed after a fixed sleep.
      const { cache, responses } = make({ ttlMs: 1_500 });
      const key = responses.key('user:u', request());
      await responses.putCompletion(key, completion());
      assert.ok(await responses.getCompletion(key));
      const expiresBy = Date.now() + 15_000;
      while ((await responses.getCompletion(key)) !== undefined) {
        assert.ok(Date.now() < expiresBy, 'the entry expired after its TTL');
        await sleep(100);
      }

      await cache.set(key, '{"v":99}', 60_000);
      assert.equal(await responses.replay(key), undefined, 'unknown format: a miss');
      assert.equal(await cache.get(key), undefined, 'and removed');
      await cache.set(key, 'not json', 60_000);
      assert.equal(await responses.getCompletion(key), undefined);

      const other = responses.key('user:v', request());
      await responses.putCompletion(key, completion(), { ttlMs: 60_000 });
      await responses.putCompletion(other, completion(), { ttlMs: 60_000 });
      assert.deepEqual(await responses.invalidateScope('user:u'), { removed: 1, complete: true });
      assert.equal(await responses.getCompletion(key), undefined);
      assert.ok(await responses.getCompletion(other));
      assert.equal(await responses.delete(other), true);
    });

    it('survives a throwing lookup callback', async () => {
      const { responses } = make({
        onLookup: () => {
          throw new Error('metrics broke');
        },
      });
      assert.equal(await responses.getCompletion(responses.key('user:u', request())), undefined);
    });
  });
}

describe('ResponseCache while Redis is unreachable', () => {
  it('misses and drops writes without throwing', async () => {
    const client = createRedis(`redis://127.0.0.1:${await freePort()}`, silent);
    try {
      const responses = new ResponseCache(new RedisCache({ redis: client, logger: silent }));
      const key = responses.key('user:u', request());
      assert.equal(await responses.getCompletion(key), undefined);
      assert.equal(await responses.replay(key), undefined);
      assert.equal(await responses.putCompletion(key, completion()), false);
      const recorder = responses.recorder(key);
      for (const event of upstreamStream(['a'])) recorder.record(event);
      assert.equal(await recorder.commit(), false);
      // None of it waited for a connection (none ever comes: waiting would fail by the test's timeout).
      assert.notEqual(client.status, 'ready');
    } finally {
      client.disconnect();
    }
  });
});

// ---- helpers (the same as in cache.contract.test.ts) ----

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function deleteByPrefix(client: Redis, prefix: string) {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${escapeGlob(prefix)}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await client.unlink(...keys);
  } while (cursor !== '0');
}
