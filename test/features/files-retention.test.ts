import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { bearer, createUser, startTestApp } from '../helpers/app.js';
import { eventually } from '../helpers/chat-stack.js';
import { createTestDatabase, DIALECTS } from '../helpers/databases.js';
import { multipart } from '../helpers/files.js';

/** Files go with their conversation when CONVERSATION_RETENTION_DAYS prunes it (issue 24), on every dialect. */
for (const dialect of DIALECTS) {
  describe(`file retention (${dialect})`, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-files-retention-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('deletes a conversation’s files (row and bytes) when retention prunes the conversation', async () => {
      const testDb = await createTestDatabase(dialect);
      const env = { FILES_DIR: dir, DEMO_WORD_DELAY_MS: '0' };
      let t = await startTestApp({ testDb, env });
      let fileId: string;
      let userId: string;
      try {
        const user = await createUser(t, 'retention-files@example.com');
        userId = user.id;
        const auth = bearer(user.accessToken);
        const body = multipart('notes.txt', 'Keep me only as long as the conversation.');
        fileId = (
          await t.inject({
            method: 'POST',
            url: '/api/files',
            headers: { ...auth, ...body.headers },
            payload: body.payload,
          })
        ).json().id;
        const unused = multipart('unused.txt', 'Never attached: retention leaves me alone.');
        await t.inject({
          method: 'POST',
          url: '/api/files',
          headers: { ...auth, ...unused.headers },
          payload: unused.payload,
        });
        const conversation = (
          await t.inject({ method: 'POST', url: '/api/conversations', headers: auth, payload: {} })
        ).json();
        const sent = await t.inject({
          method: 'POST',
          url: `/api/conversations/${conversation.id}/messages`,
          headers: auth,
          payload: { content: 'Read this', attachments: [fileId], model: 'demo', stream: false },
        });
        assert.equal(sent.statusCode, 201, sent.body);
        await t.database.db
          .updateTable('conversations')
          .set({ updated_at: '2000-01-01T00:00:00.000Z' })
          .where('id', '=', conversation.id)
          .execute();
      } finally {
        await t.close();
      }
      assert.ok(existsSync(path.join(dir, userId, fileId)));
      t = await startTestApp({ testDb, env: { ...env, CONVERSATION_RETENTION_DAYS: '1' }, migrate: false });
      try {
        const files = () => t.database.db.selectFrom('conversations').select('id').execute();
        await eventually(async () => (await files()).length === 0, 10_000, 'the conversation pruned');
        await eventually(
          () => !existsSync(path.join(dir, userId, fileId)),
          10_000,
          'the file’s bytes deleted',
        );
        const login = await t.inject({
          method: 'POST',
          url: '/api/auth/login',
          payload: { email: 'retention-files@example.com', password: 'a-long-enough-password' },
        });
        const list = await t.inject({
          method: 'GET',
          url: '/api/files',
          headers: bearer(login.json().access_token),
        });
        assert.deepEqual(
          list.json().data.map((f: { filename: string }) => f.filename),
          ['unused.txt'],
        );
      } finally {
        await t.close();
        await testDb.drop();
      }
    });
  });
}
