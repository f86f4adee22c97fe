// What /api does with the input it is sent, the same on SQLite and PostgreSQL (issue 19): text normalised
// once at the edge (NUL refused with 400 invalid_text, a lone surrogate stored as one U+FFFD, titles cut on
// grapheme boundaries), unknown fields refused with a 400 naming them, an empty JSON body read as none.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FakeGateway } from '../../src/features/conversations/testing/fake-gateway.js';
import { connectWs } from '../../src/features/conversations/testing/ws-client.js';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  type TestApp,
  type TestUser,
} from '../helpers/app.js';
import { DIALECTS } from '../helpers/databases.js';

const LONE = 'a\ud800b\udc00c';
const REPLACED = 'a\ufffdb\ufffdc';
const FAMILY = '👩‍👩‍👧';

for (const dialect of DIALECTS) {
  describe(`/api input (${dialect})`, () => {
    let t: TestApp;
    let gateway: FakeGateway;
    let user: TestUser;

    const call = (method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
      t.inject({
        method: method as 'GET',
        url,
        headers: { ...bearer(user.accessToken), ...headers },
        ...(payload === undefined ? {} : { payload: payload as object }),
      });

    before(async () => {
      gateway = new FakeGateway();
      t = await startTestApp({ dialect, gateway });
      user = await createUser(t, `input-${dialect}@example.com`);
    });
    after(() => t?.close());

    it('stores a lone surrogate as one U+FFFD, in titles and messages alike', async () => {
      const created = await call('POST', '/api/conversations', { title: LONE, model: 'fake-model' });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json().id as string;
      assert.equal(created.json().title, REPLACED);
      assert.equal((await call('GET', `/api/conversations/${id}`)).json().title, REPLACED);

      const sent = await call('POST', `/api/conversations/${id}/messages`, { content: LONE, stream: false });
      assert.equal(sent.statusCode, 201, sent.body);
      const messages = (await call('GET', `/api/conversations/${id}/messages`)).json().data as {
        role: string;
        content: string;
      }[];
      assert.equal(messages.find((m) => m.role === 'user')?.content, REPLACED);
      // What went upstream is the same text that was stored.
      const upstream = gateway.calls.at(-1)!.body.messages.at(-1)!;
      assert.equal(upstream.content, REPLACED);

      const assistant = await call('POST', '/api/assistants', {
        name: `helper ${LONE}`,
        model: 'fake-model',
        system_prompt: LONE,
      });
      assert.equal(assistant.statusCode, 201, assistant.body);
      assert.equal(assistant.json().name, `helper ${REPLACED}`);
    });

    it('refuses a NUL character with 400 invalid_text naming the field, and stores nothing', async () => {
      const before = (await call('GET', '/api/conversations?limit=100')).json().data.length as number;
      const refused = await call('POST', '/api/conversations', {
        title: 'nul\u0000here',
        model: 'fake-model',
      });
      const error = assertError(refused, 400, 'invalid_text', 'title');
      assert.match(error.message, /NUL/);
      assert.equal((await call('GET', '/api/conversations?limit=100')).json().data.length, before);

      const id = (await call('POST', '/api/conversations', { model: 'fake-model' })).json().id as string;
      const calls = gateway.callCount;
      assertError(
        await call('POST', `/api/conversations/${id}/messages`, { content: 'x\u0000', stream: false }),
        400,
        'invalid_text',
        'content',
      );
      assert.equal(gateway.callCount, calls, 'nothing was sent upstream');
      assert.equal((await call('GET', `/api/conversations/${id}/messages`)).json().data.length, 0);
      assertError(await call('GET', '/api/conversations?q=%00'), 400, 'invalid_text', 'q');
    });

    it('cuts a derived title on a grapheme boundary, never inside an emoji sequence', async () => {
      const id = (await call('POST', '/api/conversations', { model: 'fake-model' })).json().id as string;
      const sent = await call('POST', `/api/conversations/${id}/messages`, {
        content: FAMILY.repeat(40),
        stream: false,
      });
      assert.equal(sent.statusCode, 201, sent.body);
      const title = (await call('GET', `/api/conversations/${id}`)).json().title as string;
      // Each family is 8 UTF-16 units: seven fit in 60, the eighth is dropped whole.
      assert.equal(title, `${FAMILY.repeat(7)}…`);
    });

    it("an upstream reply's NUL and lone surrogates are stored alike, and the conversation goes on", async () => {
      const id = (await call('POST', '/api/conversations', { model: 'fake-model' })).json().id as string;
      gateway.script({ chunks: ['nul\u0000', ' half\ud83d', ' end'] });
      const sent = await call('POST', `/api/conversations/${id}/messages`, { content: 'hi', stream: false });
      assert.equal(sent.statusCode, 201, sent.body);
      const expected = 'nul\ufffd half\ufffd end';
      assert.equal(sent.json().message.content, expected);
      const messages = (await call('GET', `/api/conversations/${id}/messages`)).json().data as {
        role: string;
        content: string;
        status: string;
      }[];
      const reply = messages.find((m) => m.role === 'assistant');
      assert.equal(reply?.content, expected);
      assert.equal(reply?.status, 'complete');
      const next = await call('POST', `/api/conversations/${id}/messages`, {
        content: 'again',
        stream: false,
      });
      assert.equal(next.statusCode, 201, next.body);
    });

    it('WebSocket frames get the same normalisation', async () => {
      const id = (await call('POST', '/api/conversations', { model: 'fake-model' })).json().id as string;
      const base = (await t.listen()).replace(/^http/, 'ws');
      const ws = await connectWs(
        `${base}/api/conversations/${id}/ws?token=${encodeURIComponent(user.accessToken)}`,
      );
      try {
        ws.send({ type: 'send', content: 'frame\u0000' });
        const rejected = await ws.waitFor((f) => f.type === 'rejected');
        assert.equal(rejected.error.code, 'invalid_text');
        assert.equal(rejected.error.param, 'content');
        ws.send({ type: 'send', content: LONE });
        await ws.waitFor((f) => f.type === 'done');
      } finally {
        await ws.close();
      }
      const messages = (await call('GET', `/api/conversations/${id}/messages`)).json().data as {
        role: string;
        content: string;
      }[];
      assert.deepEqual(
        messages.filter((m) => m.role === 'user').map((m) => m.content),
        [REPLACED],
      );
    });

    it('refuses unknown fields with a 400 naming them, on every /api body', async () => {
      const cases: [string, string, Record<string, unknown>, string][] = [
        ['POST', '/api/keys', { name: 'k', nmae: 'typo' }, 'nmae'],
        ['POST', '/api/conversations', { model: 'fake-model', titel: 'typo' }, 'titel'],
        ['PATCH', '/api/me', { display_name: 'x', displayName: 'y' }, 'displayName'],
        ['POST', '/api/auth/logout', { refresh_token: 'rt_x', everywhere: true }, 'everywhere'],
      ];
      for (const [method, url, payload, field] of cases) {
        const res = await call(method, url, payload);
        const error = assertError(res, 400, 'validation_error', field);
        assert.match(error.message, new RegExp(`unknown field '${field}'`), `${method} ${url}`);
      }
      // Nothing was created by the refused key request.
      const keys = (await call('GET', '/api/keys')).json().data as { name: string }[];
      assert.equal(keys.length, 0);
    });

    it('DELETE with Content-Type: application/json and no body succeeds', async () => {
      const key = await call('POST', '/api/keys', { name: 'to delete' });
      assert.equal(key.statusCode, 201, key.body);
      const res = await call('DELETE', `/api/keys/${key.json().id}`, undefined, {
        'content-type': 'application/json',
      });
      assert.ok(res.statusCode < 300, `${res.statusCode} ${res.body}`);
      const id = (await call('POST', '/api/conversations', { model: 'fake-model' })).json().id as string;
      const gone = await call('DELETE', `/api/conversations/${id}`, undefined, {
        'content-type': 'application/json',
      });
      assert.ok(gone.statusCode < 300, `${gone.statusCode} ${gone.body}`);
      // A route that needs a body still says so.
      assertError(
        await call('POST', '/api/keys', undefined, { 'content-type': 'application/json' }),
        400,
        'validation_error',
      );
    });
  });
}
