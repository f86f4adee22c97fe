import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.js';
import { runDoctor } from '../../src/ops/doctor.js';
import { startFakeS3 } from '../fake-upstream/clouds/s3.js';

/** `colloquy doctor` proves the file storage writable: a directory on disk, or an S3 bucket (issue 24). */
const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-doctor-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const doctor = (env: Record<string, string>) => {
  const full = { DATABASE_URL: `sqlite:${path.join(dir, 'db.sqlite')}`, ...env };
  return runDoctor(loadConfig(full, { dotenvDir: null }), full, { envFile: null, timeoutMs: 3_000 });
};
const storageFindings = async (env: Record<string, string>) =>
  (await doctor(env)).filter((f) => f.id.startsWith('files.'));

describe('doctor: file storage', () => {
  it('is silent about a writable directory, and reports an unwritable one as an error', async () => {
    assert.deepEqual(await storageFindings({ FILES_DIR: path.join(dir, 'files') }), []);
    const blocker = path.join(dir, 'a-file');
    writeFileSync(blocker, 'not a directory');
    const bad = await storageFindings({ FILES_DIR: path.join(blocker, 'files') });
    assert.deepEqual(
      bad.map((f) => [f.id, f.severity]),
      [['files.storage_unavailable', 'error']],
    );
    assert.match(bad[0]!.message, /not writable/);
  });

  it('writes, reads and deletes a probe in the S3 bucket with signed requests; a wrong secret is an error', async () => {
    const key = {
      accessKeyId: 'AKIADOCTORFILES00001',
      secretAccessKey: 'doctor-files-secret-0123456789abcdef',
    };
    const s3 = await startFakeS3({ bucket: 'probe-bucket', region: 'us-east-1', keys: [key] });
    try {
      process.env.AWS_ACCESS_KEY_ID = key.accessKeyId;
      process.env.AWS_SECRET_ACCESS_KEY = key.secretAccessKey;
      const env = { S3_BUCKET: 'probe-bucket', S3_ENDPOINT: s3.url, S3_REGION: 'us-east-1' };
      assert.deepEqual(await storageFindings(env), []);
      assert.deepEqual(
        s3.log.map((l) => [l.method, l.verified]),
        [
          ['PUT', true],
          ['HEAD', true],
          ['DELETE', true],
        ],
      );
      assert.equal(s3.objects.size, 0, 'the probe is deleted');
      process.env.AWS_SECRET_ACCESS_KEY = 'a-wrong-secret-for-this-access-key-id';
      const bad = await storageFindings(env);
      assert.deepEqual(
        bad.map((f) => [f.id, f.severity]),
        [['files.storage_unavailable', 'error']],
      );
    } finally {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      await s3.close();
    }
  });
});
