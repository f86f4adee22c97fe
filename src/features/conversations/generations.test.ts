import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { createTestDatabase, DIALECTS, type TestDatabase } from '../../../test/helpers/databases.js';
import type { UsageRecorder } from '../usage/store.js';
import { GenerationManager } from './generation-manager.js';
import { ConversationStore } from './store.js';
import { sweepOrphanedGenerations } from './sweep.js';
import { FakeGateway, Gate, upstreamFailure } from './testing/fake-gateway.js';
import { parseSse, SseConnection } from './testing/sse-client.js';
import { connectWs } from './testing/ws-client.js';

async function waitUntil<T>(
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(20);
  }
}

for (const dialect of DIALECTS) {
  describe(`generations (${dialect})`, () => {
    let testDb: TestDatabase;
    let h: TestApp;
    let gateway: FakeGateway;
    let a: TestUser;
    let b: TestUser;
    let base: string;

    const call = (user: TestUser, method: string, url: string, payload?: unknown, headers = {}) =>
      h.inject({
        method: method as 'GET',
        url,
        headers: { ...bearer(user.accessToken), ...headers },
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
    const newConversation = async (user: TestUser = a, payload: Record<string, unknown> = {}) => {
      const res = await call(user, 'POST', '/api/conversations', { model: 'fake-model', ...payload });
      assert.equal(res.statusCode, 201, res.body);
      return res.json().id as string;
    };
    const say = async (
      conversationId: string,
      content: string,
      extra: Record<string, unknown> = {},
      user = a,
    ) => {
      const res = await call(user, 'POST', `/api/conversations/${conversationId}/messages`, {
        content,
        stream: false,
        ...extra,
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json();
    };
    const message = (id: string) =>
      h.database.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const messagesOf = (conversationId: string) =>
      h.database.db
        .selectFrom('messages')
        .selectAll()
        .where('conversation_id', '=', conversationId)
        .orderBy('id')
        .execute();
    const usageOf = (generationId: string) =>
      h.database.db.selectFrom('usage_records').selectAll().where('request_id', '=', generationId).execute();
    const branch = async (conversationId: string, query = '') => {
      const res = await call(a, 'GET', `/api/conversations/${conversationId}/messages${query}`);
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as {
        data: {
          id: string;
          role: string;
          content: string;
          sibling_ids: string[];
          parent_id: string | null;
        }[];
        leaf_id: string;
      };
    };
    const openSend = (conversationId: string, body: Record<string, unknown>, user = a, headers = {}) =>
      SseConnection.open(`${base}/api/conversations/${conversationId}/messages`, {
        method: 'POST',
        headers: { ...bearer(user.accessToken), ...headers },
        body,
      });

    /** A second manager on the suite's database, next to the app's own. */
    const standaloneManager = (options: { maxRetained?: number } = {}) =>
      new GenerationManager({
        store: new ConversationStore(h.database.db),
        gateway,
        usage: { record: async () => {} } as unknown as UsageRecorder,
        logger: pino({ level: 'silent' }),
        ...options,
      });
    /** A reply's rows as a send commits them: the message streaming, its generation running. */
    const insertRunning = async (
      conversationId: string,
      parentId: string,
      name: string,
      content: string,
      atMs: number,
    ) => {
      const at = new Date(atMs).toISOString();
      const db = h.database.db;
      await db
        .insertInto('messages')
        .values({
          id: `msg_${name}_${dialect}`,
          conversation_id: conversationId,
          parent_id: parentId,
          role: 'assistant',
          content,
          status: 'streaming',
          model: 'fake-model',
          error: null,
          prompt_tokens: null,
          completion_tokens: null,
          created_at: at,
          updated_at: at,
        })
        .execute();
      await db
        .withTables<{ generations: Record<string, unknown> }>()
        .insertInto('generations')
        .values({
          id: `gen_${name}_${dialect}`,
          user_id: a.id,
          conversation_id: conversationId,
          message_id: `msg_${name}_${dialect}`,
          user_message_id: parentId,
          kind: 'regenerate',
          model: 'fake-model',
          status: 'running',
          created_at: at,
          updated_at: at,
        })
        .execute();
    };

    before(async () => {
      testDb = await createTestDatabase(dialect);
      gateway = new FakeGateway();
      h = await startTestApp({ testDb, gateway });
      base = await h.listen();
      a = await createUser(h, 'gen-a@example.com');
      b = await createUser(h, 'gen-b@example.com');
    });
    after(async () => {
      await h?.close();
      await testDb?.drop();
    });

    it('streams message, start, deltas and done as numbered SSE events, and saves the reply complete', async () => {
      const id = await newConversation();
      gateway.script({
        chunks: ['The', ' answer', ' is 42.'],
        usage: { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 },
      });
      const res = await call(a, 'POST', `/api/conversations/${id}/messages`, {
        content: 'What is the answer?',
      });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      const events = parseSse(res.body);
      assert.deepEqual(
        events.map((e) => e.event),
        ['message', 'start', 'delta', 'delta', 'delta', 'done'],
      );
      assert.deepEqual(
        events.map((e) => e.id),
        [1, 2, 3, 4, 5, 6],
      );
      const [userEvent, start, , , , done] = events;
      assert.equal(userEvent!.data.message.role, 'user');
      assert.equal(userEvent!.data.message.content, 'What is the answer?');
      assert.equal(start!.data.message_id, done!.data.message.id);
      assert.equal(res.headers['x-generation-id'], start!.data.generation_id);
      assert.equal(done!.data.message.status, 'complete');
      assert.equal(done!.data.message.content, 'The answer is 42.');
      assert.deepEqual(done!.data.usage, { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 });

      const saved = await message(done!.data.message.id);
      assert.equal(saved.status, 'complete');
      assert.equal(saved.content, 'The answer is 42.');
      assert.equal(saved.prompt_tokens, 20);
      assert.equal(saved.completion_tokens, 5);
      assert.equal(saved.parent_id, userEvent!.data.message.id);
      const usage = await usageOf(start!.data.generation_id);
      assert.equal(usage.length, 1, 'usage recorded once per generation');
      assert.equal(usage[0]!.status, 'ok');
      assert.equal(usage[0]!.user_id, a.id);
      assert.equal(usage[0]!.prompt_tokens, 20);
      assert.equal(usage[0]!.deployment, 'fake/fake-model');
    });

    it('counts tokens itself when the upstream reports no usage', async () => {
      const id = await newConversation();
      gateway.script({ chunks: ['counted', ' locally'], usage: null });
      const result = await say(id, 'count me');
      assert.ok(result.usage.prompt_tokens > 0);
      assert.ok(result.usage.completion_tokens > 0);
      const [usage] = await usageOf(result.generation_id);
      assert.equal(usage!.completion_tokens, result.usage.completion_tokens);
    });

    it('stores the user message before calling the provider; a failure before the start leaves an error reply', async () => {
      const id = await newConversation();
      let seenAtCall: { role: string; status: string; content: string }[] = [];
      gateway.script({
        onCall: async () => {
          seenAtCall = await messagesOf(id);
        },
        failBeforeStart: upstreamFailure('upstream is down', 503),
      });
      const res = await call(a, 'POST', `/api/conversations/${id}/messages`, { content: 'are you there?' });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(
        seenAtCall.map((m) => [m.role, m.status, m.content]).sort(),
        [
          ['assistant', 'streaming', ''],
          ['user', 'complete', 'are you there?'],
        ],
        'committed before the provider was called',
      );
      const events = parseSse(res.body);
      assert.deepEqual(
        events.map((e) => e.event),
        ['message', 'start', 'error'],
      );
      const failed = events[2]!.data;
      assert.equal(failed.message.status, 'error');
      assert.equal(failed.error.code, 'upstream_error');
      assert.match(failed.error.message, /upstream is down/);
      const rows = await messagesOf(id);
      assert.deepEqual(rows.map((m) => [m.role, m.status]).sort(), [
        ['assistant', 'error'],
        ['user', 'complete'],
      ]);
      assert.equal((await usageOf(events[1]!.data.generation_id))[0]!.status, 'error');

      // stream: false relays the provider's error as the HTTP answer; the user message is kept all the same.
      gateway.script({ failBeforeStart: upstreamFailure('rate limited', 429) });
      const json = await call(a, 'POST', `/api/conversations/${id}/messages`, {
        content: 'again?',
        stream: false,
      });
      assert.equal(json.statusCode, 429, json.body);
      assert.equal(json.json().error.code, 'upstream_rate_limited');
      assert.ok((await messagesOf(id)).some((m) => m.content === 'again?' && m.role === 'user'));
    });

    it('keeps the text so far as a partial message when the provider fails mid-stream', async () => {
      const id = await newConversation();
      gateway.script({
        chunks: ['Once', ' upon', ' a time'],
        failAfter: 2,
        failWith: upstreamFailure('connection reset'),
      });
      const res = await call(a, 'POST', `/api/conversations/${id}/messages`, { content: 'tell me a story' });
      const events = parseSse(res.body);
      assert.deepEqual(
        events.map((e) => e.event),
        ['message', 'start', 'delta', 'delta', 'error'],
      );
      const last = events.at(-1)!.data;
      assert.equal(last.message.status, 'partial');
      assert.equal(last.message.content, 'Once upon');
      assert.match(last.error.message, /connection reset/);
      const saved = await message(last.message.id);
      assert.equal(saved.status, 'partial');
      assert.equal(saved.content, 'Once upon');
      assert.match(saved.error ?? '', /connection reset/);
      assert.equal((await usageOf(events[1]!.data.generation_id))[0]!.status, 'partial');
    });

    it('finishes and saves the reply when the client disconnects mid-stream', async () => {
      const id = await newConversation();
      const gate = new Gate();
      gateway.script({ chunks: ['a', 'b', 'c', 'd', 'e'], holdAfter: 2, gate });
      const sse = await openSend(id, { content: 'stream then leave' });
      assert.equal(sse.status, 200);
      const start = await sse.waitFor((e) => e.event === 'start');
      await sse.waitFor((e) => e.id === 4);
      await gate.reached;
      sse.close();
      await sse.ended;
      // While nobody listens, the text so far is already saved (periodically) and the row is still streaming.
      const midway = await waitUntil(async () => {
        const row = await message(start.data.message_id);
        return row.content === 'ab' ? row : undefined;
      });
      assert.equal(midway.status, 'streaming');
      gate.open();
      const done = await waitUntil(async () => {
        const row = await message(start.data.message_id);
        return row.status === 'complete' ? row : undefined;
      });
      assert.equal(done.content, 'abcde');
      // The usage row is written (in a batch) after the message row, so it can land a moment later.
      const usage = await waitUntil(async () => {
        const rows = await usageOf(start.data.generation_id);
        return rows.length > 0 ? rows : undefined;
      });
      assert.equal(usage.length, 1);
      assert.equal(usage[0]!.status, 'ok');
    });

    it('replays exactly the missed events after Last-Event-ID, then the live rest', async () => {
      const id = await newConversation();
      const gate = new Gate();
      gateway.script({ chunks: ['one ', 'two ', 'three ', 'four'], holdAfter: 2, gate });
      const first = await openSend(id, { content: 'count' });
      const start = await first.waitFor((e) => e.event === 'start');
      await first.waitFor((e) => e.id === 3); // message, start, 'one '
      first.close();
      const generationId = start.data.generation_id as string;

      // Reconnect while it is still held after 'two ': event 4 is replayed from memory, the rest arrives live.
      const again = await SseConnection.open(`${base}/api/generations/${generationId}/events`, {
        headers: { ...bearer(a.accessToken), 'last-event-id': '3' },
      });
      assert.equal(again.status, 200);
      await again.waitFor((e) => e.id === 4);
      gate.open();
      await again.ended;
      assert.deepEqual(
        again.events.map((e) => [e.id, e.event]),
        [
          [4, 'delta'],
          [5, 'delta'],
          [6, 'delta'],
          [7, 'done'],
        ],
      );
      const text = [
        'one ',
        ...again.events.filter((e) => e.event === 'delta').map((e) => e.data.content),
      ].join('');
      assert.equal(text, 'one two three four');
      assert.equal(again.events.at(-1)!.data.message.content, 'one two three four');

      // After the end: `after` as a query parameter, and nothing at all once the client has the last event.
      const tail = await call(a, 'GET', `/api/generations/${generationId}/events?after=5`);
      assert.deepEqual(
        parseSse(tail.body).map((e) => e.id),
        [6, 7],
      );
      const none = await call(a, 'GET', `/api/generations/${generationId}/events`, undefined, {
        'last-event-id': '7',
      });
      assert.equal(none.statusCode, 200);
      assert.deepEqual(parseSse(none.body), []);
      const status = await call(a, 'GET', `/api/generations/${generationId}`);
      assert.equal(status.json().status, 'complete');
      assert.equal(status.json().last_event_id, 7);
    });

    it('cancels a running generation: the message is saved partial with its text', async () => {
      const id = await newConversation();
      const gate = new Gate();
      gateway.script({ chunks: ['keep', ' this', ' not this'], holdAfter: 2, gate });
      const sse = await openSend(id, { content: 'go' });
      const start = await sse.waitFor((e) => e.event === 'start');
      await gate.reached;
      await sse.waitFor((e) => e.id === 4);
      const cancelled = await call(a, 'POST', `/api/generations/${start.data.generation_id}/cancel`);
      assert.equal(cancelled.statusCode, 200, cancelled.body);
      assert.equal(cancelled.json().status, 'partial');
      assert.equal(cancelled.json().message.content, 'keep this');
      assert.equal(cancelled.json().message.status, 'partial');
      const last = await sse.waitFor((e) => e.event === 'error');
      assert.equal(last.data.error.code, 'cancelled');
      await sse.ended;
      const saved = await message(start.data.message_id);
      assert.equal(saved.status, 'partial');
      assert.equal(saved.content, 'keep this');
      assert.equal((await usageOf(start.data.generation_id))[0]!.status, 'cancelled');
      // Cancelling again is harmless: it reports how the generation ended.
      const twice = await call(a, 'POST', `/api/generations/${start.data.generation_id}/cancel`);
      assert.equal(twice.json().status, 'partial');
      gate.open();
    });

    it('regenerates a reply as a sibling under the same user message', async () => {
      const id = await newConversation();
      const first = await say(id, 'pick a colour');
      gateway.script({ chunks: ['Blue.'] });
      const res = await call(a, 'POST', `/api/conversations/${id}/messages/${first.message.id}/regenerate`, {
        stream: false,
      });
      assert.equal(res.statusCode, 201, res.body);
      const second = res.json();
      assert.equal(second.user_message, null);
      assert.equal(second.message.parent_id, first.user_message.id);
      assert.notEqual(second.message.id, first.message.id);
      assert.equal(second.message.content, 'Blue.');
      const view = await branch(id);
      assert.deepEqual(
        view.data.map((m) => m.content),
        ['pick a colour', 'Blue.'],
      );
      assert.deepEqual(view.data[1]!.sibling_ids, [first.message.id, second.message.id]);
      const old = await branch(id, `?leaf=${first.message.id}`);
      assert.equal(old.data[1]!.id, first.message.id);
      // The model saw the history up to the user message, not the reply being replaced.
      assert.deepEqual(
        gateway.calls.at(-1)!.body.messages.map((m) => m.content),
        ['pick a colour'],
      );
      // Regenerating from the user message itself works too; a body is optional.
      const third = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages/${first.user_message.id}/regenerate`,
      );
      assert.equal(third.statusCode, 200);
      assert.equal((await branch(id)).data[1]!.sibling_ids.length, 3);
    });

    it('edits a user message into a new branch; switching branches via leaf and active_leaf_id', async () => {
      const id = await newConversation();
      const one = await say(id, 'first question');
      const two = await say(id, 'second question');
      const res = await call(a, 'POST', `/api/conversations/${id}/messages/${two.user_message.id}/edit`, {
        content: 'second question, rephrased',
        stream: false,
      });
      assert.equal(res.statusCode, 201, res.body);
      const edited = res.json();
      assert.equal(edited.user_message.parent_id, one.message.id, 'a sibling of the edited message');
      assert.deepEqual(
        gateway.calls.at(-1)!.body.messages.map((m) => m.content),
        ['first question', 'Hello there!', 'second question, rephrased'],
      );
      const active = await branch(id);
      assert.deepEqual(
        active.data.map((m) => m.content),
        ['first question', 'Hello there!', 'second question, rephrased', 'Hello there!'],
      );
      assert.deepEqual(active.data[2]!.sibling_ids, [two.user_message.id, edited.user_message.id]);

      const previous = await branch(id, `?leaf=${two.user_message.id}`);
      assert.deepEqual(
        previous.data.map((m) => m.id),
        [one.user_message.id, one.message.id, two.user_message.id, two.message.id],
      );
      assert.equal(previous.leaf_id, two.message.id, 'down to the newest leaf under it');

      const switched = await call(a, 'PATCH', `/api/conversations/${id}`, {
        active_leaf_id: two.user_message.id,
      });
      assert.equal(switched.json().active_leaf_id, two.message.id);
      assert.equal((await branch(id)).leaf_id, two.message.id);
      // A plain send (no parent_id) continues the active branch.
      const three = await say(id, 'third');
      assert.equal(three.user_message.parent_id, two.message.id);
      // Editing the very first message forks at the root.
      const root = await call(a, 'POST', `/api/conversations/${id}/messages/${one.user_message.id}/edit`, {
        content: 'a different start',
        stream: false,
      });
      assert.equal(root.json().user_message.parent_id, null);
      assert.deepEqual((await branch(id)).data[0]!.sibling_ids, [
        one.user_message.id,
        root.json().user_message.id,
      ]);
      const notUser = await call(a, 'POST', `/api/conversations/${id}/messages/${one.message.id}/edit`, {
        content: 'x',
      });
      assert.equal(notUser.statusCode, 400);
    });

    it('continues a partial reply from its text, with another model', async () => {
      const id = await newConversation();
      gateway.script({ chunks: ['The first half', ' and'], failAfter: 2 });
      const broken = await say(id, 'write two halves');
      assert.equal(broken.status, 'partial');
      assert.equal(broken.message.content, 'The first half and');

      gateway.script({
        chunks: [' the second half.'],
        usage: { prompt_tokens: 30, completion_tokens: 4, total_tokens: 34 },
      });
      const res = await call(a, 'POST', `/api/conversations/${id}/messages/${broken.message.id}/continue`, {
        model: 'other-model',
        stream: false,
      });
      assert.equal(res.statusCode, 201, res.body);
      const resumed = res.json();
      assert.equal(resumed.message.id, broken.message.id, 'the same message grows');
      assert.equal(resumed.message.status, 'complete');
      assert.equal(resumed.message.content, 'The first half and the second half.');
      assert.equal(resumed.message.model, 'other-model');
      assert.equal(resumed.message.error, null);
      const sent = gateway.calls.at(-1)!.body;
      assert.equal(sent.model, 'other-model');
      assert.deepEqual(sent.messages.at(-1), { role: 'assistant', content: 'The first half and' });

      const again = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages/${broken.message.id}/continue`,
        {},
      );
      assert.equal(again.statusCode, 409);
      assert.equal(again.json().error.code, 'message_not_resumable');
    });

    it('replays an Idempotency-Key: same ids, no second model call, no duplicate rows', async () => {
      const id = await newConversation();
      const key = { 'idempotency-key': `send-${dialect}-1` };
      const first = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages`,
        { content: 'once', stream: false },
        key,
      );
      assert.equal(first.statusCode, 201, first.body);
      const calls = gateway.callCount;
      const rows = (await messagesOf(id)).length;

      const retry = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages`,
        { content: 'once', stream: false },
        key,
      );
      assert.equal(retry.statusCode, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.deepEqual(retry.json(), first.json());
      // A streaming retry replays the same generation's events.
      const streamed = await call(a, 'POST', `/api/conversations/${id}/messages`, { content: 'once' }, key);
      const events = parseSse(streamed.body);
      assert.equal(events[0]!.data.message.id, first.json().user_message.id);
      assert.equal(events.at(-1)!.data.message.id, first.json().message.id);
      assert.equal(gateway.callCount, calls, 'no second generation');
      assert.equal((await messagesOf(id)).length, rows, 'no duplicate rows');
      assert.equal((await usageOf(first.json().generation_id)).length, 1);

      const reused = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages`,
        { content: 'different', stream: false },
        key,
      );
      assert.equal(reused.statusCode, 422);
      assert.equal(reused.json().error.code, 'idempotency_key_reused');

      // Concurrent retries of one request: a single generation.
      const race = { 'idempotency-key': `send-${dialect}-race` };
      const before = gateway.callCount;
      const results = await Promise.all(
        [1, 2, 3].map(() =>
          call(a, 'POST', `/api/conversations/${id}/messages`, { content: 'race', stream: false }, race),
        ),
      );
      for (const r of results) assert.equal(r.statusCode, 201, r.body);
      assert.equal(new Set(results.map((r) => r.json().message.id)).size, 1);
      assert.equal(gateway.callCount, before + 1);
      assert.equal((await messagesOf(id)).filter((m) => m.content === 'race').length, 1);

      // Keys belong to a user: another user's identical key is unrelated.
      const theirs = await newConversation(b);
      const other = await call(
        b,
        'POST',
        `/api/conversations/${theirs}/messages`,
        { content: 'once', stream: false },
        key,
      );
      assert.equal(other.statusCode, 201);
      assert.notEqual(other.json().message.id, first.json().message.id);

      // Regenerate, edit and continue honour keys as well.
      const regen = { 'idempotency-key': `regen-${dialect}` };
      const url = `/api/conversations/${id}/messages/${first.json().message.id}/regenerate`;
      const r1 = await call(a, 'POST', url, { stream: false }, regen);
      const r2 = await call(a, 'POST', url, { stream: false }, regen);
      assert.equal(r1.json().message.id, r2.json().message.id);
    });

    it('trims the context oldest first to fit the window, keeping the system prompt', async () => {
      const assistant = await call(a, 'POST', '/api/assistants', {
        name: 'Terse',
        system_prompt: 'You are terse.',
        model: 'fake-model',
        params: { max_tokens: 1000, temperature: 0.2 },
      });
      assert.equal(assistant.statusCode, 201, assistant.body);
      const id = await newConversation(a, { assistant_id: assistant.json().id });
      // fake-model is unknown to the table: an 8192-token window, 1000 of them reserved for the reply.
      const long = (n: number) => `${n} ${'lorem ipsum dolor sit amet '.repeat(500)}`; // ~2500 tokens
      for (let i = 1; i <= 4; i++) await say(id, long(i));
      const sent = gateway.calls.at(-1)!.body;
      assert.equal(sent.messages[0]!.role, 'system');
      assert.equal(sent.messages[0]!.content, 'You are terse.');
      assert.equal(sent.temperature, 0.2);
      assert.equal(sent.max_tokens, 1000);
      const contents = sent.messages.slice(1).map((m) => String(m.content).split(' ')[0]);
      assert.equal(contents.at(-1), '4', 'the newest message is kept');
      assert.ok(!contents.includes('1'), 'the oldest message is dropped');
      assert.equal(sent.messages[1]!.role, 'user', 'the kept history starts with a user turn');
      const { countPromptTokens } = await import('../../providers/tokens.js');
      assert.ok((await countPromptTokens(sent.messages)) <= 8192 - 1000);
    });

    it('sweeps orphaned streaming rows to partial at start-up, keeping their text', async () => {
      const id = await newConversation();
      const done = await say(id, 'before the crash');
      const db = h.database.db;
      // The sweep takes every streaming row: earlier tests' replies must have settled first (under load a
      // reply's last write can trail the test that started it). One that never settles is a defect, named here.
      const streaming = () =>
        db.selectFrom('messages').select(['id', 'updated_at']).where('status', '=', 'streaming').execute();
      await waitUntil(async () => (await streaming()).length === 0, 20_000).catch(async () =>
        assert.fail(`replies still streaming: ${JSON.stringify(await streaming())}`),
      );
      await insertRunning(id, done.user_message.id, 'orphan', 'half a repl', Date.now() - 60_000);
      assert.equal(await sweepOrphanedGenerations(db, { staleAfterMs: 120_000 }), 0, 'not stale yet');
      assert.equal(await sweepOrphanedGenerations(db), 1);
      const row = await message(`msg_orphan_${dialect}`);
      assert.equal(row.status, 'partial');
      assert.equal(row.content, 'half a repl');
      assert.match(row.error ?? '', /interrupted/);
      const status = await call(a, 'GET', `/api/generations/gen_orphan_${dialect}`);
      assert.equal(status.json().status, 'partial');
      // A reconnection learns how it ended from the database.
      const events = parseSse((await call(a, 'GET', `/api/generations/gen_orphan_${dialect}/events`)).body);
      assert.deepEqual(
        events.map((e) => e.event),
        ['error'],
      );
      assert.equal(events[0]!.data.message.content, 'half a repl');
      // It can be continued like any partial reply.
      const resumed = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages/msg_orphan_${dialect}/continue`,
        {
          stream: false,
        },
      );
      assert.equal(resumed.json().message.content, 'half a replHello there!');
    });

    it('ends a reply as an error when the rows of a failed send are committed late (a COMMIT applied on resume)', async () => {
      const id = await newConversation();
      const done = await say(id, 'before the database stalled');
      const manager = standaloneManager();
      manager.abandon(`gen_late_${dialect}`);
      await sleep(800); // its first looks find nothing
      await insertRunning(id, done.user_message.id, 'late', '', Date.now());
      const row = await waitUntil(async () => {
        const row = await message(`msg_late_${dialect}`);
        return row.status !== 'streaming' && row;
      });
      assert.equal(row.status, 'error');
      assert.match(row.error ?? '', /send it again/);
      assert.equal((await call(a, 'GET', `/api/generations/gen_late_${dialect}`)).json().status, 'error');
      await manager.close(0);
    });

    it('keeps finished generations for reconnection without their prompt, and at most maxRetained of them', async () => {
      const id = await newConversation();
      const done = await say(id, 'before the burst');
      const manager = standaloneManager({ maxRetained: 2 });
      for (const name of ['kept1', 'kept2', 'kept3']) {
        await insertRunning(id, done.user_message.id, name, '', Date.now());
        gateway.script({ chunks: ['a', 'b'] });
        const live = manager.start({
          id: `gen_${name}_${dialect}`,
          kind: 'reply',
          userId: a.id,
          apiKeyId: null,
          conversationId: id,
          userMessage: null,
          message: await message(`msg_${name}_${dialect}`),
          prefix: '',
          priorCompletionTokens: 0,
          body: { model: 'fake-model', messages: [{ role: 'user', content: 'a long prompt '.repeat(1000) }] },
          titleSource: null,
        });
        await live.finished;
        await sleep(1); // it is retired just after it resolves `finished`
      }
      // The oldest is let go (the database answers for it); the latest two keep their whole event log.
      assert.equal(manager.get(`gen_kept1_${dialect}`), undefined);
      const kept = manager.get(`gen_kept3_${dialect}`);
      assert.deepEqual(
        kept?.events.map((e) => e.type),
        ['start', 'delta', 'delta', 'done'],
      );
      assert.equal(kept?.spec.body.messages.length, 0, 'the prompt is still held after the generation ended');
      assert.equal(kept?.text, '');
      assert.ok(manager.get(`gen_kept2_${dialect}`));
      await manager.close(0);
    });

    it('refuses to send under a reply that is still streaming', async () => {
      const id = await newConversation();
      const gate = new Gate();
      gateway.script({ chunks: ['x', 'y'], holdAfter: 1, gate });
      const sse = await openSend(id, { content: 'slow one' });
      const start = await sse.waitFor((e) => e.event === 'start');
      const res = await call(a, 'POST', `/api/conversations/${id}/messages`, {
        content: 'impatient',
        stream: false,
      });
      assert.equal(res.statusCode, 409);
      assert.equal(res.json().error.code, 'generation_in_progress');
      const cont = await call(
        a,
        'POST',
        `/api/conversations/${id}/messages/${start.data.message_id}/continue`,
        {},
      );
      assert.equal(cont.json().error.code, 'generation_in_progress');
      gate.open();
      await sse.ended;
    });

    it('speaks the same flow over a WebSocket, authenticated by header or ?token=', async () => {
      const id = await newConversation();
      const wsBase = base.replace('http', 'ws');
      const ws = await connectWs(
        `${wsBase}/api/conversations/${id}/ws?token=${encodeURIComponent(a.accessToken)}`,
      );
      gateway.script({ chunks: ['over', ' the', ' socket'] });
      ws.send({ type: 'send', content: 'hello socket' });
      const done = await ws.waitFor((f) => f.type === 'done');
      const frames = ws.frames.filter((f) => f.generation_id === done.generation_id);
      assert.deepEqual(
        frames.map((f) => f.type),
        ['message', 'start', 'delta', 'delta', 'delta', 'done'],
      );
      assert.deepEqual(
        frames.map((f) => f.id),
        [1, 2, 3, 4, 5, 6],
      );
      assert.equal(done.data.message.content, 'over the socket');
      ws.send({ type: 'ping' });
      await ws.waitFor((f) => f.type === 'pong');
      ws.send({ type: 'bogus' });
      const rejected = await ws.waitFor((f) => f.type === 'rejected');
      assert.equal(rejected.error.code, 'validation_error');

      // Cancel over the socket.
      const gate = new Gate();
      gateway.script({ chunks: ['stop', ' me'], holdAfter: 1, gate });
      ws.send({ type: 'send', content: 'and now cancel' });
      const start = await ws.waitFor((f) => f.type === 'start' && f.generation_id !== done.generation_id);
      await gate.reached;
      ws.send({ type: 'cancel', generation_id: start.generation_id });
      const stopped = await ws.waitFor((f) => f.type === 'error' && f.generation_id === start.generation_id);
      assert.equal(stopped.data.message.status, 'partial');
      assert.equal(stopped.data.message.content, 'stop');
      await ws.close();
      gate.open();

      const withHeader = await connectWs(`${wsBase}/api/conversations/${id}/ws`, bearer(a.accessToken));
      withHeader.send({ type: 'send', content: 'via header' });
      await withHeader.waitFor((f) => f.type === 'done');
      await withHeader.close();

      await assert.rejects(connectWs(`${wsBase}/api/conversations/${id}/ws`), /HTTP 401/);
      await assert.rejects(connectWs(`${wsBase}/api/conversations/${id}/ws?token=nonsense`), /HTTP 401/);
      await assert.rejects(
        connectWs(`${wsBase}/api/conversations/${id}/ws?token=${encodeURIComponent(b.accessToken)}`),
        /HTTP 404/,
      );
      assert.ok(!h.logText().includes(a.accessToken), 'the query token is not logged');
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`generations at shutdown (${dialect})`, () => {
    it('lets running generations finish during the drain period, then saves what is left as partial', async () => {
      const testDb = await createTestDatabase(dialect);
      const gateway = new FakeGateway();
      const h = await startTestApp({ testDb, gateway });
      try {
        const base = await h.listen();
        const user = await createUser(h, 'shutdown@example.com');
        const conv = await h.inject({
          method: 'POST',
          url: '/api/conversations',
          headers: bearer(user.accessToken),
          payload: { model: 'fake-model' },
        });
        const gate = new Gate();
        gateway.script({ chunks: ['saved', ' never sent'], holdAfter: 1, gate });
        const sse = await SseConnection.open(`${base}/api/conversations/${conv.json().id}/messages`, {
          method: 'POST',
          headers: bearer(user.accessToken),
          body: { content: 'long answer please' },
        });
        const start = await sse.waitFor((e) => e.event === 'start');
        await gate.reached;
        await sse.waitFor((e) => e.event === 'delta');

        const closed = h.app.close();
        await sleep(100);
        const during = await h.database.db
          .selectFrom('messages')
          .select('status')
          .where('id', '=', start.data.message_id)
          .executeTakeFirstOrThrow();
        assert.equal(during.status, 'streaming', 'still running during the drain period');
        // The server ends open streams when its drain period is over.
        h.app.endOpenStreams();
        await closed;
        const last = await sse.waitFor((e) => e.event === 'error');
        assert.equal(last.data.error.code, 'shutdown');
        const row = await h.database.db
          .selectFrom('messages')
          .selectAll()
          .where('id', '=', start.data.message_id)
          .executeTakeFirstOrThrow();
        assert.equal(row.status, 'partial');
        assert.equal(row.content, 'saved');
        gate.open();
      } finally {
        await h.close();
        await testDb.drop();
      }
    });
  });
}
