import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseDatabaseUrl } from '../../src/config/database-url.js';
import type { FileTables } from '../../src/features/files/store.js';
import { createBackup, restoreBackup } from '../../src/ops/backup.js';
import { backupFiles, filesBackupDir, restoreFiles } from '../../src/ops/backup-files.js';
import { bearer, createUser, startTestApp } from '../helpers/app.js';
import { createTestDatabase } from '../helpers/databases.js';
import { multipart, png } from '../helpers/files.js';

/** Backup and restore cover uploaded files on disk (issue 24): a restored server serves the same bytes. */
describe('backup and restore of uploaded files (SQLite, disk)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-files-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('copies FILES_DIR beside the database backup and puts it back on restore', async () => {
    const testDb = await createTestDatabase('sqlite');
    const filesDir = path.join(dir, 'files');
    const env = { FILES_DIR: filesDir };
    const image = await png(20, 10);
    let t = await startTestApp({ testDb, env });
    let fileId: string;
    let auth: Record<string, string>;
    try {
      auth = bearer((await createUser(t, 'backup-files@example.com')).accessToken);
      const body = multipart('chart.png', image);
      const res = await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...auth, ...body.headers },
        payload: body.payload,
      });
      assert.equal(res.statusCode, 201, res.body);
      fileId = res.json().id;
    } finally {
      await t.close();
    }
    const target = parseDatabaseUrl(testDb.url);
    const backup = path.join(dir, 'colloquy.db');
    await createBackup(target, backup);
    const copied = await backupFiles(t.config.files.storage, backup);
    assert.equal(copied.files, 2, 'the original and the image prepared for models');
    assert.equal(statSync(filesBackupDir(backup)).mode & 0o777, 0o700, 'users’ files: owner only');

    // Disaster: the files are gone (and the database replaced by its backup).
    rmSync(filesDir, { recursive: true, force: true });
    await restoreBackup(target, backup);
    const restored = await restoreFiles(t.config.files.storage, backup);
    assert.equal(restored?.files, 2);

    t = await startTestApp({ testDb, env, migrate: false });
    try {
      const login = await t.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email: 'backup-files@example.com', password: 'a-long-enough-password' },
      });
      auth = bearer(login.json().access_token);
      const content = await t.inject({ method: 'GET', url: `/api/files/${fileId}/content`, headers: auth });
      assert.equal(content.statusCode, 200);
      assert.ok(content.rawPayload.equals(image), 'the same bytes');
    } finally {
      await t.close();
      await testDb.drop();
    }
  });

  it('names a file the database references but FILES_DIR lacks, and still copies the rest', async () => {
    const testDb = await createTestDatabase('sqlite');
    const filesDir = path.join(dir, 'files-missing');
    const t = await startTestApp({ testDb, env: { FILES_DIR: filesDir } });
    let key: string;
    try {
      const auth = bearer((await createUser(t, 'backup-missing@example.com')).accessToken);
      const body = multipart('notes.txt', 'a note whose bytes get lost\n');
      const res = await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...auth, ...body.headers },
        payload: body.payload,
      });
      assert.equal(res.statusCode, 201, res.body);
      key = (
        await t.database.db
          .withTables<FileTables>()
          .selectFrom('files')
          .select('storage_key')
          .executeTakeFirstOrThrow()
      ).storage_key;
      rmSync(path.join(filesDir, key));
      const backup = path.join(dir, 'missing.db');
      await createBackup(parseDatabaseUrl(testDb.url), backup);
      const copied = await backupFiles(t.config.files.storage, backup, t.database.db);
      assert.equal(copied.files, 0);
      assert.equal(copied.missing, 1);
      assert.deepEqual(copied.missingKeys, [key]);
    } finally {
      await t.close();
      await testDb.drop();
    }
  });
});
