import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import sharp from 'sharp';
import { type FakeS3, startFakeS3 } from '../fake-upstream/clouds/s3.js';
import { assertError, bearer, createUser } from '../helpers/app.js';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';
import { DIALECTS, type TestDialect } from '../helpers/databases.js';
import { docx, jpegWithExif, multipart, pdf, png } from '../helpers/files.js';

/**
 * Issue 24: uploads, downloads and their use by the conversation API and /v1, on SQLite, PostgreSQL and
 * MySQL/MariaDB (TEST_MYSQL_URL), on local disk and on an S3-compatible store whose fake verifies every
 * request's SigV4 signature.
 */
const S3_KEY = {
  accessKeyId: 'AKIAFILESTEST0000001',
  secretAccessKey: 'files-test-secret-access-key-0123456789',
};

type Storage = 'disk' | 's3';
const combos: [TestDialect, Storage][] = DIALECTS.flatMap(
  (d) =>
    [
      [d, 'disk'],
      [d, 's3'],
    ] as [TestDialect, Storage][],
);

interface Harness {
  stack: ChatStack;
  s3?: FakeS3;
  filesDir: string;
  auth: Record<string, string>;
  upload(
    name: string,
    data: Buffer | string,
    auth?: Record<string, string>,
  ): ReturnType<ChatStack['t']['inject']>;
  /** A new, empty conversation of the stack's user. */
  newConversation(): Promise<{ id: string }>;
  /** POSTs a message (content, attachments, model, stream) to one of the user's conversations. */
  sendMessage(conversationId: string, payload: Record<string, unknown>): ReturnType<ChatStack['t']['inject']>;
  /** Deletes the user's files, one by one: the quota tests start from, and leave, an empty quota. */
  deleteFiles(ids: string[]): Promise<void>;
  close(): Promise<void>;
}

async function start(
  dialect: TestDialect,
  storage: Storage,
  env: Record<string, string> = {},
): Promise<Harness> {
  const filesDir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-files-'));
  let s3: FakeS3 | undefined;
  const storageEnv: Record<string, string> = { FILES_DIR: filesDir };
  if (storage === 's3') {
    s3 = await startFakeS3({ bucket: 'colloquy-files', region: 'eu-west-3', keys: [S3_KEY] });
    // The AWS chain reads the environment: this test file's process only.
    process.env.AWS_ACCESS_KEY_ID = S3_KEY.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3_KEY.secretAccessKey;
    Object.assign(storageEnv, { S3_BUCKET: 'colloquy-files', S3_ENDPOINT: s3.url, S3_REGION: 'eu-west-3' });
  }
  const stack = await startChatStack({
    dialect,
    env: { ...storageEnv, ...env },
    routing: (backupUrl) => {
      const routing = defaultRouting(backupUrl);
      routing.models = [
        ...(routing.models ?? []),
        // A text-only model: images sent to it must be refused with a clear 400.
        { name: 'text-only', vision: false, deployments: [{ provider: 'openai', model: 'gpt-4o-mini' }] },
        // Aliases without a `vision` key: judged by what they route to, not by their own name.
        { name: 'chat-alias', deployments: [{ provider: 'openai', model: 'gpt-4o-mini' }] },
        {
          name: 'mixed-alias',
          deployments: [
            { provider: 'openai', model: 'gpt-4o-mini' },
            { provider: 'backup', model: 'gpt-3.5-turbo', priority: 1 },
          ],
        },
        {
          name: 'small-window',
          vision: true,
          context_window: 2_000,
          deployments: [{ provider: 'openai', model: 'gpt-4o-mini' }],
        },
      ];
      return routing;
    },
  });
  const auth = bearer(stack.apiKey);
  return {
    stack,
    s3,
    filesDir,
    auth,
    upload: (name, data, headers = auth) => {
      const body = multipart(name, data);
      return stack.t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...headers, ...body.headers },
        payload: body.payload,
      });
    },
    newConversation: async () =>
      (
        await stack.t.inject({ method: 'POST', url: '/api/conversations', headers: auth, payload: {} })
      ).json(),
    sendMessage: (conversationId, payload) =>
      stack.t.inject({
        method: 'POST',
        url: `/api/conversations/${conversationId}/messages`,
        headers: auth,
        payload,
      }),
    deleteFiles: async (ids) => {
      for (const id of ids)
        await stack.t.inject({ method: 'DELETE', url: `/api/files/${id}`, headers: auth });
    },
    close: async () => {
      await stack.close();
      await s3?.close();
      rmSync(filesDir, { recursive: true, force: true });
    },
  };
}

const lastUpstreamBody = (h: Harness) => {
  const requests = h.stack.fake.requests.filter((r) => r.path.endsWith('/chat/completions'));
  return requests.at(-1)!.body as { messages: { role: string; content: unknown }[] };
};

/** An image sent to `model` is refused with 400 model_without_vision, and nothing reaches the upstream. */
async function assertNoVision(
  h: Harness,
  conversationId: string,
  { content, photo, model }: { content: string; photo: string; model: string },
) {
  const before = h.stack.fake.requests.length;
  assertError(
    await h.sendMessage(conversationId, { content, attachments: [photo], model, stream: false }),
    400,
    'model_without_vision',
    'model',
  );
  assert.equal(h.stack.fake.requests.length, before);
}

type Part = { type: string; text?: string; image_url?: { url: string } };

for (const [dialect, storage] of combos) {
  describe(`files on ${dialect} with ${storage} storage`, () => {
    let h: Harness;
    before(async () => {
      h = await start(dialect, storage);
    });
    after(() => h?.close());

    it('uploads, lists, describes, downloads as an attachment and deletes; others get 404', async () => {
      const res = await h.upload('notes.md', '# Minutes\n\nThe budget is *42* euros.\n');
      assert.equal(res.statusCode, 201, res.body);
      const file = res.json();
      assert.match(file.id, /^file_/);
      assert.equal(file.kind, 'document');
      assert.equal(file.media_type, 'text/markdown; charset=utf-8');
      assert.equal(file.bytes, 37);
      assert.equal(file.filename, 'notes.md');

      const list = await h.stack.t.inject({ method: 'GET', url: '/api/files', headers: h.auth });
      assert.deepEqual(
        list.json().data.map((f: { id: string }) => f.id),
        [file.id],
      );
      const meta = await h.stack.t.inject({ method: 'GET', url: `/api/files/${file.id}`, headers: h.auth });
      assert.equal(meta.json().sha256, file.sha256);

      const content = await h.stack.t.inject({
        method: 'GET',
        url: `/api/files/${file.id}/content`,
        headers: h.auth,
      });
      assert.equal(content.statusCode, 200);
      assert.equal(content.body, '# Minutes\n\nThe budget is *42* euros.\n');
      assert.equal(content.headers['x-content-type-options'], 'nosniff');
      assert.match(String(content.headers['content-disposition']), /^attachment; filename="notes.md"/);
      if (h.s3)
        assert.ok(
          [...h.s3.objects.keys()].some((k) => k.endsWith(file.id)),
          'stored in the bucket',
        );
      else assert.ok(existsSync(path.join(h.filesDir, h.stack.userId, file.id)), 'stored under FILES_DIR');

      const text = await h.stack.t.inject({
        method: 'GET',
        url: `/api/files/${file.id}/text`,
        headers: h.auth,
      });
      assert.equal(text.json().text, '# Minutes\n\nThe budget is *42* euros.\n');

      const other = await createUser(h.stack.t, `other-${dialect}-${storage}@example.com`);
      for (const url of [`/api/files/${file.id}`, `/api/files/${file.id}/content`]) {
        assertError(
          await h.stack.t.inject({ method: 'GET', url, headers: bearer(other.accessToken) }),
          404,
          'not_found',
        );
      }
      assertError(
        await h.stack.t.inject({
          method: 'DELETE',
          url: `/api/files/${file.id}`,
          headers: bearer(other.accessToken),
        }),
        404,
        'not_found',
      );
      const gone = await h.stack.t.inject({
        method: 'DELETE',
        url: `/api/files/${file.id}`,
        headers: h.auth,
      });
      assert.equal(gone.statusCode, 204);
      assertError(
        await h.stack.t.inject({ method: 'GET', url: `/api/files/${file.id}`, headers: h.auth }),
        404,
        'not_found',
      );
      if (h.s3)
        assert.ok(![...h.s3.objects.keys()].some((k) => k.includes(file.id)), 'removed from the bucket');
      else assert.ok(!existsSync(path.join(h.filesDir, h.stack.userId, file.id)), 'removed from disk');
      if (h.s3) assert.equal(h.s3.refused(), 0, 'every S3 request carried a valid signature');
    });

    // The database part, once per dialect: MySQL's `text` column would refuse (or cut) past 64 KB.
    it('keeps a document’s text whole past 64 KB, emoji included', { skip: storage !== 'disk' }, async () => {
      const long = Array.from({ length: 3000 }, (_, i) => `Ligne ${i} du compte rendu, été 🙂.`).join('\n');
      assert.ok(Buffer.byteLength(long) > 100_000, "past MySQL text's 65,535 bytes");
      const res = await h.upload('long-notes.md', long);
      assert.equal(res.statusCode, 201, res.body);
      const text = await h.stack.t.inject({
        method: 'GET',
        url: `/api/files/${res.json().id}/text`,
        headers: h.auth,
      });
      assert.equal(text.statusCode, 200, text.body);
      assert.equal(text.json().text, long);
    });

    it('sends images (resized, EXIF stripped) and document text through the conversation API', async () => {
      const photo = (await h.upload('photo.jpg', await jpegWithExif(3000, 2000))).json();
      assert.equal(photo.kind, 'image');
      assert.deepEqual(
        [photo.width, photo.height],
        [2000, 3000],
        'dimensions as viewed (EXIF orientation applied)',
      );
      const report = (await h.upload('report.pdf', pdf(['Quarterly revenue rose by 17 percent.']))).json();
      const memo = (await h.upload('memo.docx', docx(['The launch moves to March.']))).json();
      assert.equal(memo.kind, 'document', JSON.stringify(memo));

      const conversation = await h.newConversation();
      const sent = await h.sendMessage(conversation.id, {
        content: 'What do these say?',
        attachments: [photo.id, report.id, memo.id],
        model: 'gpt-4o-mini',
        stream: false,
      });
      assert.equal(sent.statusCode, 201, sent.body);
      const user = lastUpstreamBody(h).messages.at(-1)!;
      const parts = user.content as Part[];
      const image = parts.find((p) => p.type === 'image_url')!;
      const data = Buffer.from(image.image_url!.url.replace(/^data:image\/jpeg;base64,/, ''), 'base64');
      const seen = await sharp(data).metadata();
      assert.deepEqual([seen.width, seen.height], [1045, 1568], 'fits 1568 px, upright');
      assert.equal(seen.exif, undefined, 'EXIF stripped');
      assert.ok(!data.includes(Buffer.from('SecretCam')));
      const texts = parts.filter((p) => p.type === 'text').map((p) => p.text!);
      assert.ok(
        texts.some((t) => t.includes('Quarterly revenue rose by 17 percent.')),
        texts.join('|'),
      );
      assert.ok(texts.some((t) => t.includes('The launch moves to March.')));
      assert.equal(texts.at(-1), 'What do these say?');

      // The files stay with the message: the next turn sends them again, and the listing names them.
      const next = await h.sendMessage(conversation.id, {
        content: 'And in one word?',
        model: 'gpt-4o-mini',
        stream: false,
      });
      assert.equal(next.statusCode, 201, next.body);
      const history = lastUpstreamBody(h).messages;
      assert.ok(JSON.stringify(history).includes('Quarterly revenue rose'));
      const messages = (
        await h.stack.t.inject({
          method: 'GET',
          url: `/api/conversations/${conversation.id}/messages`,
          headers: h.auth,
        })
      ).json();
      assert.deepEqual(messages.data[0].attachments, [photo.id, report.id, memo.id]);

      // A model without vision: a clear 400, nothing sent upstream.
      await assertNoVision(h, conversation.id, {
        content: 'Describe it',
        photo: photo.id,
        model: 'text-only',
      });

      // Deleting the conversation deletes the files it used.
      const deleted = await h.stack.t.inject({
        method: 'DELETE',
        url: `/api/conversations/${conversation.id}`,
        headers: h.auth,
      });
      assert.equal(deleted.statusCode, 204);
      for (const id of [photo.id, report.id, memo.id])
        assertError(
          await h.stack.t.inject({ method: 'GET', url: `/api/files/${id}`, headers: h.auth }),
          404,
          'not_found',
        );
      if (h.s3) assert.equal(h.s3.refused(), 0);
    });

    it('accepts OpenAI file parts ({type:"file", file:{file_id}}) on /v1/chat/completions', async () => {
      const chart = (await h.upload('chart.png', await png(400, 300))).json();
      const doc = (await h.upload('spec.txt', 'The widget weighs 3 kg.')).json();
      const client = new OpenAI({ apiKey: h.stack.apiKey, baseURL: `${h.stack.url}/v1` });
      await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Compare' },
              { type: 'file', file: { file_id: chart.id } },
              { type: 'file', file: { file_id: doc.id } },
            ],
          },
        ],
      });
      const parts = lastUpstreamBody(h).messages[0]!.content as Part[];
      assert.equal(parts[0]!.text, 'Compare');
      assert.match(parts[1]!.image_url!.url, /^data:image\/png;base64,/);
      assert.match(parts[2]!.text!, /The widget weighs 3 kg\./);
      await assert.rejects(
        client.chat.completions.create({
          model: 'gpt-4o-mini',
          messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file_missing' } }] }],
        }),
        (err: { status?: number }) => err.status === 404,
      );
      if (h.s3) assert.equal(h.s3.refused(), 0);
    });
  });
}

describe('upload limits and document trimming (SQLite, disk)', () => {
  let h: Harness;
  before(async () => {
    h = await start('sqlite', 'disk', {
      MAX_UPLOAD_SIZE: '200000',
      FILES_QUOTA_BYTES: '300000',
      ALLOWED_EXTENSIONS: 'txt,png,pdf,docx,jpg',
    });
  });
  after(() => h?.close());

  it('refuses a file over MAX_UPLOAD_SIZE with 413 and keeps nothing', async () => {
    assertError(await h.upload('big.txt', 'x'.repeat(200_001)), 413, 'file_too_large', 'file');
    const left = readdirSync(h.filesDir, { recursive: true }).filter((f) => String(f).endsWith('.part'));
    assert.deepEqual(left, []);
  });

  it('checks the type by content, not the name', async () => {
    assertError(await h.upload('page.html', '<html></html>'), 415, 'unsupported_file_type');
    assertError(await h.upload('notes.md', '# not allowed here'), 415, 'unsupported_file_type');
    assertError(await h.upload('fake.png', '<script>alert(1)</script>'), 415, 'unsupported_file_type');
    assertError(await h.upload('photo.jpg', await png(10, 10)), 415, 'unsupported_file_type');
    assertError(await h.upload('binary.txt', Buffer.from([0x41, 0x00, 0x42])), 415, 'unsupported_file_type');
  });

  it('enforces the per-user quota with 413 file_quota_exceeded', async () => {
    const a = await h.upload('a.txt', 'a'.repeat(150_000));
    assert.equal(a.statusCode, 201);
    const b = await h.upload('b.txt', 'b'.repeat(150_000));
    assert.equal(b.statusCode, 201);
    assertError(await h.upload('c.txt', 'c'.repeat(10)), 413, 'file_quota_exceeded');
    await h.deleteFiles([a, b].map((f) => f.json().id));
    assert.equal((await h.upload('c.txt', 'c'.repeat(10))).statusCode, 201, 'room again after deleting');
  });

  it('concurrent uploads never take a user past the quota: the refused ones leave nothing behind', async () => {
    // An empty quota to start with: earlier tests may have left files.
    const earlier = (await h.stack.t.inject({ url: '/api/files?limit=100', headers: h.auth })).json();
    await h.deleteFiles(earlier.data.map((f: { id: string }) => f.id));
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => h.upload(`race-${i}.txt`, String(i).repeat(100_000))),
    );
    const kept = answers.filter((a) => a.statusCode === 201);
    for (const a of answers) if (a.statusCode !== 201) assertError(a, 413, 'file_quota_exceeded');
    assert.ok(kept.length >= 1 && kept.length <= 3, `${kept.length} of 8 kept under a quota of 3`);
    const listed = (await h.stack.t.inject({ url: '/api/files?limit=100', headers: h.auth })).json();
    assert.equal(listed.data.length, kept.length, 'only the kept uploads are listed');
    const stored = readdirSync(h.filesDir, { recursive: true, withFileTypes: true }).filter(
      (e) => e.isFile() && !e.parentPath.includes('.incoming') && !e.parentPath.includes('.doctor'),
    );
    assert.equal(stored.length, kept.length, 'only the kept uploads are stored');
    await h.deleteFiles(kept.map((f) => f.json().id));
  });

  it('cuts a document to the context window, with a note saying so', async () => {
    const long = Array.from({ length: 3000 }, (_, i) => `Sentence number ${i} of a long report.`).join(' ');
    const file = (await h.upload('long.txt', long)).json();
    const conversation = await h.newConversation();
    const sent = await h.sendMessage(conversation.id, {
      content: 'Summarise',
      attachments: [file.id],
      model: 'small-window',
      stream: false,
    });
    assert.equal(sent.statusCode, 201, sent.body);
    const parts = lastUpstreamBody(h).messages.at(-1)!.content as Part[];
    const text = parts[0]!.text!;
    assert.ok(text.startsWith('[Document: long.txt]\nSentence number 0 of a long report.'));
    assert.match(
      text,
      /this document was cut to fit the model's context window: the first [\d,]+ of [\d,]+ characters/,
    );
    assert.ok(text.length < 8_000, `cut to the 2,000-token window (${text.length} chars)`);
  });

  it('sends images to an alias of a vision model; refuses them when a deployment has no vision', async () => {
    const photo = (await h.upload('photo.png', await png(40, 30))).json();
    const conversation = await h.newConversation();
    const sent = await h.sendMessage(conversation.id, {
      content: 'What is this?',
      attachments: [photo.id],
      model: 'chat-alias',
      stream: false,
    });
    assert.equal(sent.statusCode, 201, sent.body);
    const parts = lastUpstreamBody(h).messages.at(-1)!.content as Part[];
    assert.match(parts[0]!.image_url!.url, /^data:image\/png;base64,/);
    // A failover could reach gpt-3.5-turbo, which sees no images: refused before anything is sent.
    await assertNoVision(h, conversation.id, { content: 'And this?', photo: photo.id, model: 'mixed-alias' });
  });

  it('refuses attachments that are not the caller’s, and unknown fields', async () => {
    const conversation = await h.newConversation();
    assertError(
      await h.sendMessage(conversation.id, { content: 'hi', attachments: ['file_nope'], stream: false }),
      404,
      'not_found',
      'attachments',
    );
  });
});
