import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { filesBackupDir } from '../../src/ops/backup-files.js';
import { type FakeS3, startFakeS3 } from '../fake-upstream/clouds/s3.js';
import { bearer, createUser, startTestApp } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.js';
import { multipart } from '../helpers/files.js';

/**
 * `colloquy backup` / `restore` with files in an S3 bucket, as an operator runs them (the built CLI,
 * dist/main.js): what they print, and their exit codes when an object is missing or a copy is damaged.
 */
const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const KEY = { accessKeyId: 'AKIABACKUPS3CLI00001', secretAccessKey: 'backup-s3-cli-secret-0123456789abcdef' };
const REGION = 'us-east-1';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], cwd: string, env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      {
        cwd,
        env: { PATH: process.env.PATH ?? '', HOME: cwd, ...env },
        timeout: 60_000,
      },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }),
    );
    child.stdin?.end();
  });
}

const show = (r: Run) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

describe('colloquy backup / restore with files in S3 (built CLI, SQLite)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-backup-s3-cli-'));
  const backup = path.join(dir, 'first.db');
  const notes = Buffer.from('What the CLI backs up.\n');
  let source: FakeS3;
  let spare: FakeS3;
  let testDb: TestDatabase;
  let key: string;
  const envFor = (s3: FakeS3) => ({
    DATABASE_URL: testDb.url,
    SECRET_KEY: randomBytes(36).toString('base64url'),
    S3_BUCKET: s3.bucket,
    S3_ENDPOINT: s3.url,
    S3_REGION: REGION,
    AWS_ACCESS_KEY_ID: KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
  });

  before(async () => {
    source = await startFakeS3({ bucket: 'colloquy-files', region: REGION, keys: [KEY] });
    spare = await startFakeS3({ bucket: 'colloquy-recovered', region: REGION, keys: [KEY] });
    testDb = await createTestDatabase('sqlite');
    process.env.AWS_ACCESS_KEY_ID = KEY.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = KEY.secretAccessKey;
    const t = await startTestApp({
      testDb,
      env: { S3_BUCKET: source.bucket, S3_ENDPOINT: source.url, S3_REGION: REGION },
    });
    try {
      const auth = bearer((await createUser(t, 'backup-s3-cli@example.com')).accessToken);
      const body = multipart('notes.txt', notes);
      const res = await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...auth, ...body.headers },
        payload: body.payload,
      });
      assert.equal(res.statusCode, 201, res.body);
    } finally {
      await t.close();
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
    }
    key = [...source.objects.keys()][0]!;
  });
  after(async () => {
    await source?.close();
    await spare?.close();
    await testDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('backup --verify copies the objects and checks them against the manifest', async () => {
    const r = await cli(['backup', '--verify', '--out', backup], dir, envFor(source));
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stderr,
      /^files: 1 files \(23 B\) in .*first\.db\.files, listed in .*first\.db\.files-manifest\.jsonl$/m,
    );
    assert.match(r.stderr, /^verified: 1 files match their manifest/m);
    assert.doesNotMatch(r.stderr, /^files: warning/m);
    assert.ok(readFileSync(path.join(filesBackupDir(backup), key)).equals(notes));
  });

  it('restore uploads them to the configured (empty) bucket, and skips them when run again', async () => {
    let r = await cli(['restore', backup, '--yes'], dir, envFor(spare));
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stderr,
      /^files: 1 uploaded \(23 B\) to s3 bucket colloquy-recovered .*, 0 already there/m,
    );
    assert.ok(spare.objects.get(key)?.data.equals(notes));
    r = await cli(['restore', backup, '--yes'], dir, envFor(spare));
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /^files: 0 uploaded .*, 1 already there with the same bytes/m);
    assert.equal(source.refused() + spare.refused(), 0, 'every S3 request carried a valid signature');
  });

  it('a bucket that refuses the credentials fails the restore with a message naming key and bucket', async () => {
    const r = await cli(['restore', backup, '--yes'], dir, {
      ...envFor(spare),
      AWS_SECRET_ACCESS_KEY: 'a-wrong-secret-for-this-access-key-id',
    });
    assert.equal(r.code, 1, show(r));
    assert.match(
      r.stderr,
      new RegExp(
        `^colloquy: the database is restored, but its files are not: ${key} could not be uploaded to s3 bucket colloquy-recovered`,
        'm',
      ),
    );
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  });

  it('restore exits 1 naming a damaged copy, and uploads nothing damaged', async () => {
    const copy = path.join(filesBackupDir(backup), key);
    writeFileSync(copy, Buffer.from('What the CLI backs up!\n'));
    spare.objects.clear();
    const r = await cli(['restore', backup, '--yes'], dir, envFor(spare));
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, new RegExp(`^  ${key}: SHA-256 differs$`, 'm'));
    assert.match(r.stderr, /1 files of the backup do not match .* and were not uploaded/);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    assert.equal(spare.objects.size, 0);
  });

  it('backup names an object the database references but the bucket lacks, and still succeeds', async () => {
    source.objects.clear();
    const r = await cli(['backup', '--verify', '--out', path.join(dir, 'second.db')], dir, envFor(source));
    assert.equal(r.code, 0, show(r));
    assert.match(
      r.stderr,
      new RegExp(
        `^files: warning: 1 file the database references is missing from the storage.*: ${key}$`,
        'm',
      ),
    );
    assert.match(r.stderr, /^verified: 0 files match their manifest/m);
  });
});
