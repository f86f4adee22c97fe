import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { exportPKCS8, generateKeyPair } from 'jose';
import { loadConfig } from '../../src/config/load-config.js';
import { runDoctor } from '../../src/ops/doctor.js';
import { startFakeGemini } from '../fake-upstream/clouds/gemini.js';
import { startFakeVertex } from '../fake-upstream/clouds/vertex.js';
import { cloudDoctorDeps, DOCTOR_SECRET, findingsOf } from '../helpers/doctor.js';

/** doctor's one line per Google cloud: Gemini's key and Vertex's service account, against the fakes. */

const SECRET = DOCTOR_SECRET;
const deps = cloudDoctorDeps;
const lines = findingsOf;

describe('doctor: Google clouds', () => {
  it('Gemini: a wrong key is one credentials line (key not echoed); the right key is ok', async () => {
    const gemini = await startFakeGemini({ apiKey: 'gemini-doctor-key-0123456789' });
    try {
      const env = {
        HOST: '127.0.0.1',
        SECRET_KEY: SECRET,
        GEMINI_API_KEY: 'wrong-gemini-key-0123456789',
        GEMINI_BASE_URL: gemini.url,
      };
      const bad = lines(await runDoctor(loadConfig(env, { dotenvDir: null }), env, deps), 'cloud.gemini');
      assert.deepEqual(
        bad.map((f) => [f.id, f.severity]),
        [['cloud.gemini.credentials', 'error']],
      );
      assert.match(bad[0]!.message, /^gemini: .*refused Colloquy's credentials/);
      assert.doesNotMatch(bad[0]!.message, /wrong-gemini-key/);
      assert.equal(gemini.requests.at(-1)?.path, '/v1beta/models');
      const fixed = { ...env, GEMINI_API_KEY: 'gemini-doctor-key-0123456789' };
      const good = lines(
        await runDoctor(loadConfig(fixed, { dotenvDir: null }), fixed, deps),
        'cloud.gemini',
      );
      assert.deepEqual(
        good.map((f) => f.id),
        ['cloud.gemini.ok'],
      );
    } finally {
      await gemini.close();
    }
  });

  it('Vertex: the service account exchanged and the project reached is ok; a wrong project is not_found', async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    const email = 'doctor@proj.iam.gserviceaccount.com';
    const vertex = await startFakeVertex({
      project: 'proj',
      location: 'us-central1',
      clientEmail: email,
      publicKey: pair.publicKey,
      lifetimeSeconds: 3600,
      now: Date.now,
    });
    const dir = await mkdtemp(join(tmpdir(), 'colloquy-doctor-vertex-'));
    try {
      const keyFile = join(dir, 'sa.json');
      await writeFile(
        keyFile,
        JSON.stringify({
          type: 'service_account',
          client_email: email,
          private_key: await exportPKCS8(pair.privateKey),
          token_uri: `${vertex.url}/token`,
        }),
      );
      const env = {
        HOST: '127.0.0.1',
        SECRET_KEY: SECRET,
        VERTEX_PROJECT: 'proj',
        VERTEX_LOCATION: 'us-central1',
        VERTEX_BASE_URL: vertex.url,
        GOOGLE_APPLICATION_CREDENTIALS: keyFile,
      };
      const good = lines(await runDoctor(loadConfig(env, { dotenvDir: null }), env, deps), 'cloud.vertex');
      assert.deepEqual(
        good.map((f) => f.id),
        ['cloud.vertex.ok'],
      );
      const wrong = { ...env, VERTEX_PROJECT: 'other-project' };
      const bad = lines(await runDoctor(loadConfig(wrong, { dotenvDir: null }), wrong, deps), 'cloud.vertex');
      assert.deepEqual(
        bad.map((f) => f.id),
        ['cloud.vertex.not_found'],
      );
      const noKey = { ...env, GOOGLE_APPLICATION_CREDENTIALS: join(dir, 'missing.json') };
      const auth = lines(
        await runDoctor(loadConfig(noKey, { dotenvDir: null }), noKey, deps),
        'cloud.vertex',
      );
      assert.deepEqual(
        auth.map((f) => f.id),
        ['cloud.vertex.credentials'],
      );
      assert.match(auth[0]!.message, /GOOGLE_APPLICATION_CREDENTIALS/);
    } finally {
      await vertex.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
