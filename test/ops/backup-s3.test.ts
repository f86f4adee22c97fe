import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDatabaseUrl } from '../../src/config/database-url.js';
import { openDatabase } from '../../src/db/database.js';
import type { FilesStorageConfig } from '../../src/features/files/config.js';
import { createBackup, restoreBackup } from '../../src/ops/backup.js';
import { backupFiles, filesBackupDir, restoreFiles, verifyFiles } from '../../src/ops/backup-files.js';
import { manifestFile } from '../../src/ops/backup-objects.js';
import { type FakeS3, startFakeS3 } from '../fake-upstream/clouds/s3.js';
import { bearer, createUser, startTestApp } from '../helpers/app.js';
import { createTestDatabase, postgresAvailable, type TestDatabase } from '../helpers/databases.js';
import { multipart, png } from '../helpers/files.js';

/**
 * Backup and restore cover files kept in an S3 bucket (issue 24): the objects the database references are
 * copied into the backup with a manifest, `--verify` checks the copies against it, and a restore uploads
 * them to the configured bucket — here another, empty one, as after losing the first. The fake S3 checks
 * every request's SigV4 signature.
 */
const KEY = {
  accessKeyId: 'AKIABACKUPS3TEST0001',
  secretAccessKey: 'backup-s3-test-secret-0123456789abcdef',
};
const REGION = 'eu-west-3';
const DIALECTS = ['sqlite', ...(postgresAvailable() ? ['postgres' as const] : [])] as const;

const storageOf = (s3: FakeS3): FilesStorageConfig => ({
  kind: 's3',
  bucket: s3.bucket,
  endpoint: s3.url,
  region: REGION,
  prefix: '',
  forcePathStyle: true,
});
const envOf = (s3: FakeS3) => ({ S3_BUCKET: s3.bucket, S3_ENDPOINT: s3.url, S3_REGION: REGION });

const manifestLines = (backup: string) =>
  readFileSync(manifestFile(backup), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

for (const dialect of DIALECTS)
  describe(`backup and restore of files in an S3 bucket (${dialect})`, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-s3-'));
    const backup = path.join(dir, `colloquy.${dialect === 'sqlite' ? 'db' : 'dump'}`);
    const notes = Buffer.from('Notes for the backup test.\nSecond line.\n');
    let source: FakeS3;
    let spare: FakeS3;
    let testDb: TestDatabase;
    let ids: { image: string; notes: string };
    let keys: { image: string; notes: string };

    before(async () => {
      // The AWS chain reads the environment: this test file's process only.
      process.env.AWS_ACCESS_KEY_ID = KEY.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = KEY.secretAccessKey;
      source = await startFakeS3({ bucket: 'colloquy-files', region: REGION, keys: [KEY] });
      spare = await startFakeS3({ bucket: 'colloquy-recovered', region: REGION, keys: [KEY] });
      testDb = await createTestDatabase(dialect);
    });
    after(async () => {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      await source?.close();
      await spare?.close();
      await testDb?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('backs up the referenced objects with a manifest, and restores them into an empty bucket', async () => {
      const picture = await png(24, 12);
      let t = await startTestApp({ testDb, env: envOf(source) });
      try {
        const auth = bearer((await createUser(t, 'backup-s3@example.com')).accessToken);
        const upload = async (name: string, data: Buffer) => {
          const body = multipart(name, data);
          const res = await t.inject({
            method: 'POST',
            url: '/api/files',
            headers: { ...auth, ...body.headers },
            payload: body.payload,
          });
          assert.equal(res.statusCode, 201, res.body);
          return res.json() as { id: string };
        };
        ids = {
          image: (await upload('chart.png', picture)).id,
          notes: (await upload('notes.txt', notes)).id,
        };
      } finally {
        await t.close();
      }
      const objectKey = (id: string) => [...source.objects.keys()].find((k) => k.endsWith(id))!;
      keys = { image: objectKey(ids.image), notes: objectKey(ids.notes) };
      // An object no row references: not part of the backup.
      source.objects.set('stray/orphan', { data: Buffer.from('nobody'), contentType: 'text/plain' });

      const target = parseDatabaseUrl(testDb.url);
      await createBackup(target, backup);
      const handle = openDatabase({ ...target, poolSize: 2, poolTimeoutMs: 10_000, busyTimeoutMs: 10_000 });
      const copied = await backupFiles(storageOf(source), backup, handle.db).finally(() => handle.close());
      assert.equal(copied.kind, 's3');
      assert.equal(copied.files, 3, 'the image, its model-ready copy and the text file');
      assert.equal(copied.missing, 0);
      assert.equal(statSync(filesBackupDir(backup)).mode & 0o777, 0o700, 'users’ files: owner only');
      assert.ok(readFileSync(path.join(filesBackupDir(backup), keys.image)).equals(picture));
      const [header, ...entries] = manifestLines(backup);
      assert.equal(header?.format, 'colloquy-files');
      assert.deepEqual(
        entries.map((e) => e.key).sort(),
        [keys.image, `${keys.image}.model`, keys.notes].sort(),
        'the keys the database references, not the stray object',
      );
      const notesEntry = entries.find((e) => e.key === keys.notes)!;
      assert.equal(notesEntry.bytes, notes.length);
      assert.match(String(notesEntry.mediaType), /^text\/plain/);
      assert.deepEqual((await verifyFiles(backup))?.problems, []);

      // Disaster: the database is restored from the backup and the files go to another, empty bucket.
      if (target.dialect === 'sqlite') rmSync(target.path, { force: true });
      await restoreBackup(target, backup);
      const restored = await restoreFiles(storageOf(spare), backup);
      assert.equal(restored?.files, 3);
      assert.equal(restored?.skipped, 0);
      assert.deepEqual(restored?.problems, []);
      assert.equal(spare.objects.size, 3);
      // Run again (an interrupted restore is simply resumed): nothing is sent twice.
      const puts = spare.log.filter((l) => l.method === 'PUT').length;
      const again = await restoreFiles(storageOf(spare), backup);
      assert.deepEqual([again?.files, again?.skipped], [0, 3]);
      assert.equal(spare.log.filter((l) => l.method === 'PUT').length, puts, 'no upload the second time');

      t = await startTestApp({ testDb, env: envOf(spare), migrate: false });
      try {
        const login = await t.inject({
          method: 'POST',
          url: '/api/auth/login',
          payload: { email: 'backup-s3@example.com', password: 'a-long-enough-password' },
        });
        const auth = bearer(login.json().access_token);
        for (const [id, bytes] of [
          [ids.image, picture],
          [ids.notes, notes],
        ] as const) {
          const res = await t.inject({ method: 'GET', url: `/api/files/${id}/content`, headers: auth });
          assert.equal(res.statusCode, 200, res.body);
          assert.ok(res.rawPayload.equals(bytes), 'the same bytes, from the recovered bucket');
        }
      } finally {
        await t.close();
      }
      assert.equal(source.refused() + spare.refused(), 0, 'every S3 request carried a valid signature');
    });

    it('verify and restore name a corrupted or missing copy; the rest is restored', async () => {
      const files = filesBackupDir(backup);
      const damaged = path.join(files, keys.image);
      const bytes = readFileSync(damaged);
      bytes[bytes.length >> 1]! ^= 0xff;
      writeFileSync(damaged, bytes);
      unlinkSync(path.join(files, keys.notes));
      const problems = (await verifyFiles(backup))?.problems ?? [];
      assert.deepEqual(
        problems.map((p) => [p.key, p.problem]).sort(),
        [
          [keys.image, 'SHA-256 differs'],
          [keys.notes, 'missing from the backup'],
        ].sort(),
      );
      spare.objects.clear();
      const restored = await restoreFiles(storageOf(spare), backup);
      assert.equal(restored?.problems.length, 2);
      assert.equal(restored?.files, 1, 'the sound copy is uploaded');
      assert.deepEqual([...spare.objects.keys()], [`${keys.image}.model`], 'nothing damaged was uploaded');
    });

    it('names a referenced object missing from the bucket at backup time, and still backs up', async () => {
      source.objects.delete(keys.notes);
      const second = path.join(dir, 'second-backup');
      const target = parseDatabaseUrl(testDb.url);
      await createBackup(target, second);
      const handle = openDatabase({ ...target, poolSize: 2, poolTimeoutMs: 10_000, busyTimeoutMs: 10_000 });
      const copied = await backupFiles(storageOf(source), second, handle.db).finally(() => handle.close());
      assert.equal(copied.files, 2);
      assert.equal(copied.missing, 1);
      assert.deepEqual(copied.missingKeys, [keys.notes]);
      assert.deepEqual(
        manifestLines(second).find((e) => e.key === keys.notes),
        { key: keys.notes, missing: true },
      );
      const check = await verifyFiles(second);
      assert.deepEqual([check?.checked, check?.missingAtBackup, check?.problems], [2, 1, []]);
    });
  });
