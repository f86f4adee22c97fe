import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { bearer, createUser, startTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { multipart, png } from '../../../test/helpers/files.js';
import { FakeGateway } from './testing/fake-gateway.js';
import { connectWs } from './testing/ws-client.js';

/**
 * A WebSocket `send` frame takes what the HTTP send takes (docs/conversations.md, "WebSocket protocol"):
 * `attachments` (files from POST /api/files) and the reply settings `temperature`, `max_tokens` and
 * `system_prompt`, checked by the same schema and refused with the same codes, in a `rejected` frame, with
 * nothing stored or sent upstream and the socket still usable.
 */
describe('conversation WebSocket: the send frame takes the HTTP send’s fields', () => {
  let h: TestApp;
  let gateway: FakeGateway;
  let a: TestUser;
  let b: TestUser;
  let wsBase: string;
  let filesDir: string;

  before(async () => {
    filesDir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-ws-files-'));
    gateway = new FakeGateway();
    // A vision model (supportsVision knows gpt-4o by name); fake-model is text only.
    gateway.models.add('gpt-4o');
    h = await startTestApp({ gateway, env: { FILES_DIR: filesDir } });
    wsBase = (await h.listen()).replace('http', 'ws');
    a = await createUser(h, 'ws-fields-a@example.com');
    b = await createUser(h, 'ws-fields-b@example.com');
  });
  after(async () => {
    await h?.close();
    if (filesDir) rmSync(filesDir, { recursive: true, force: true });
  });

  const upload = async (user: TestUser, name: string, data: Buffer | string) => {
    const body = multipart(name, data);
    const res = await h.inject({
      method: 'POST',
      url: '/api/files',
      headers: { ...bearer(user.accessToken), ...body.headers },
      payload: body.payload,
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json() as { id: string; kind: string };
  };
  const conversation = async () => {
    const res = await h.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(a.accessToken),
      payload: { model: 'fake-model' },
    });
    assert.equal(res.statusCode, 201, res.body);
    return res.json().id as string;
  };
  const messagesOf = async (id: string) =>
    (
      await h.inject({
        method: 'GET',
        url: `/api/conversations/${id}/messages`,
        headers: bearer(a.accessToken),
      })
    ).json().data as { role: string; attachments?: string[] }[];
  const open = async (id: string) => {
    const ws = await connectWs(`${wsBase}/api/conversations/${id}/ws`, bearer(a.accessToken));
    /** Sends a frame and waits for the first answer of the given type that came after it. */
    // biome-ignore lint/suspicious/noExplicitAny: test frames are inspected freely
    const ask = (frame: unknown, type: string): Promise<any> => {
      const from = ws.frames.length;
      ws.send(frame);
      return ws.waitFor((f) => f.type === type && ws.frames.indexOf(f) >= from, 10_000);
    };
    return { ws, ask };
  };
  /** The same body over HTTP: the error it gets (the reference for the frame's). */
  const httpError = async (id: string, body: Record<string, unknown>) => {
    const res = await h.inject({
      method: 'POST',
      url: `/api/conversations/${id}/messages`,
      headers: bearer(a.accessToken),
      payload: { ...body, stream: false },
    });
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, res.body);
    return res.json().error as { code: string; param: string | null };
  };
  const userPartsOf = (call: (typeof gateway.calls)[number]) =>
    call.body.messages.at(-1)!.content as { type: string; text?: string; image_url?: { url: string } }[];

  it('sends an image and a document to a vision model, and keeps them on the message', async () => {
    const photo = await upload(a, 'photo.png', await png(40, 30));
    const notes = await upload(a, 'notes.txt', 'The meeting moves to Thursday at nine.');
    assert.deepEqual([photo.kind, notes.kind], ['image', 'document']);
    const id = await conversation();
    const { ws, ask } = await open(id);
    try {
      const done = await ask(
        { type: 'send', content: 'What do these say?', model: 'gpt-4o', attachments: [photo.id, notes.id] },
        'done',
      );
      assert.equal(done.data.message.status, 'complete');
      const call = gateway.calls.at(-1)!;
      assert.equal(call.body.model, 'gpt-4o');
      const parts = userPartsOf(call);
      assert.match(
        parts.find((p) => p.type === 'image_url')?.image_url?.url ?? '',
        /^data:image\/png;base64,/,
      );
      const texts = parts.filter((p) => p.type === 'text').map((p) => p.text!);
      assert.ok(
        texts.some((t) => t.includes('The meeting moves to Thursday at nine.')),
        texts.join('|'),
      );
      assert.equal(texts.at(-1), 'What do these say?');
      const user = (await messagesOf(id)).find((m) => m.role === 'user')!;
      assert.deepEqual(user.attachments, [photo.id, notes.id]);
    } finally {
      await ws.close();
    }
  });

  it('sends the reply settings of the frame upstream, for that reply only', async () => {
    const id = await conversation();
    const { ws, ask } = await open(id);
    try {
      await ask(
        {
          type: 'send',
          content: 'Bonjour',
          temperature: 0.3,
          max_tokens: 77,
          system_prompt: 'Answer in French.',
        },
        'done',
      );
      const body = gateway.calls.at(-1)!.body;
      assert.equal(body.temperature, 0.3);
      assert.equal(body.max_tokens, 77);
      assert.deepEqual(body.messages[0], { role: 'system', content: 'Answer in French.' });

      await ask({ type: 'send', content: 'And now?' }, 'done');
      const plain = gateway.calls.at(-1)!.body;
      assert.equal(plain.temperature, undefined, 'not stored: the next reply has the defaults');
      assert.equal(plain.max_tokens, undefined);
      assert.equal(plain.messages[0]!.role, 'user');
    } finally {
      await ws.close();
    }
  });

  it('refuses what the HTTP send refuses, with its code, storing and sending nothing', async () => {
    const photo = await upload(a, 'photo.png', await png(20, 20));
    const theirs = await upload(b, 'theirs.txt', 'Not yours to read.');
    const id = await conversation();
    const cases: [Record<string, unknown>, string, string][] = [
      [{ temperature: null }, 'validation_error', 'temperature'],
      [{ temperature: -0.1 }, 'validation_error', 'temperature'],
      [{ temperature: 2.01 }, 'validation_error', 'temperature'],
      [{ temperature: '0.5' }, 'validation_error', 'temperature'],
      [{ max_tokens: null }, 'validation_error', 'max_tokens'],
      [{ max_tokens: 0 }, 'validation_error', 'max_tokens'],
      [{ max_tokens: 1.5 }, 'validation_error', 'max_tokens'],
      [{ max_tokens: 1_000_001 }, 'validation_error', 'max_tokens'],
      [{ system_prompt: null }, 'validation_error', 'system_prompt'],
      [{ system_prompt: 'x'.repeat(32_001) }, 'validation_error', 'system_prompt'],
      [{ attachments: null }, 'validation_error', 'attachments'],
      [{ attachments: Array.from({ length: 11 }, (_, i) => `file_${i}`) }, 'validation_error', 'attachments'],
      // Valid by type, but no room left for the prompt: fake-model's window is 8,192 tokens.
      [{ max_tokens: 8_192 }, 'invalid_request', 'max_tokens'],
      // An image to a model without vision.
      [{ attachments: [photo.id] }, 'model_without_vision', 'model'],
      // Another user's file, and one that does not exist.
      [{ attachments: [theirs.id] }, 'not_found', 'attachments'],
      [{ attachments: ['file_nope'] }, 'not_found', 'attachments'],
    ];
    const calls = gateway.callCount;
    const { ws, ask } = await open(id);
    try {
      for (const [extra, code, param] of cases) {
        const what = JSON.stringify(extra).slice(0, 80);
        const rejected = await ask({ type: 'send', content: 'hi', ...extra }, 'rejected');
        assert.equal(rejected.request_type, 'send', what);
        assert.equal(rejected.error.code, code, `${what}: ${JSON.stringify(rejected.error)}`);
        assert.match(`${rejected.error.param ?? ''} ${rejected.error.message}`, new RegExp(param), what);
        const http = await httpError(id, { content: 'hi', ...extra });
        assert.equal(rejected.error.code, http.code, `${what}: the HTTP send's code`);
        assert.equal(rejected.error.param, http.param, what);
      }
      assert.equal(gateway.callCount, calls, 'nothing sent upstream');
      assert.deepEqual(await messagesOf(id), [], 'nothing stored');

      // The socket still works.
      await ask({ type: 'ping' }, 'pong');
      const done = await ask({ type: 'send', content: 'still here', temperature: 1 }, 'done');
      assert.equal(done.data.message.status, 'complete');
      assert.equal(gateway.calls.at(-1)!.body.temperature, 1);
    } finally {
      await ws.close();
    }
  });
});
