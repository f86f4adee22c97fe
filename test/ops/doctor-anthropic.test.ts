import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.js';
import { runDoctor } from '../../src/ops/doctor.js';
import { startFakeAnthropic } from '../fake-upstream/clouds/anthropic.js';
import { cloudDoctorDeps, DOCTOR_SECRET, findingsOf } from '../helpers/doctor.js';

/**
 * doctor's one line for Anthropic: a real authenticated call (List Models, GET /v1/models with x-api-key and
 * anthropic-version) against a fake written from Anthropic's docs (see test/fake-upstream/clouds/anthropic.ts).
 */

const SECRET = DOCTOR_SECRET;
const deps = cloudDoctorDeps;
const lines = findingsOf;
const KEY = 'sk-ant-api03-doctor-key-0123456789';
const doctor = (env: Record<string, string>) => runDoctor(loadConfig(env, { dotenvDir: null }), env, deps);

describe('doctor: Anthropic', () => {
  it('a wrong ANTHROPIC_API_KEY is one credentials line (key not echoed); the right key is ok', async () => {
    const anthropic = await startFakeAnthropic({ apiKey: KEY });
    try {
      const env = {
        HOST: '127.0.0.1',
        SECRET_KEY: SECRET,
        ANTHROPIC_API_KEY: 'sk-ant-api03-wrong-key-0123456789',
        ANTHROPIC_BASE_URL: anthropic.url,
      };
      const bad = lines(await doctor(env), 'cloud.anthropic');
      assert.deepEqual(
        bad.map((f) => [f.id, f.severity]),
        [['cloud.anthropic.credentials', 'error']],
      );
      assert.match(bad[0]!.message, /^anthropic: .*refused Colloquy's credentials: invalid x-api-key$/);
      assert.doesNotMatch(bad[0]!.message, /wrong-key/);
      assert.match(bad[0]!.fix, /ANTHROPIC_API_KEY/);
      const sent = anthropic.requests.at(-1)!;
      assert.equal(`${sent.method} ${sent.path}`, 'GET /v1/models');
      assert.equal(sent.query.get('limit'), '1');
      assert.equal(sent.headers['anthropic-version'], '2023-06-01');

      const good = lines(await doctor({ ...env, ANTHROPIC_API_KEY: KEY }), 'cloud.anthropic');
      assert.deepEqual(
        good.map((f) => [f.id, f.message]),
        [['cloud.anthropic.ok', 'anthropic: reachable, credentials accepted']],
      );
    } finally {
      await anthropic.close();
    }
  });

  it("an account that cannot pay is one billing line; a routing file's Anthropic provider is checked by its name", async () => {
    const anthropic = await startFakeAnthropic({ apiKey: KEY, billing: true });
    const dir = await mkdtemp(join(tmpdir(), 'colloquy-doctor-anthropic-'));
    try {
      const routing = join(dir, 'routing.json');
      await writeFile(
        routing,
        JSON.stringify({
          providers: [{ name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: KEY }],
          models: [{ name: 'sonnet', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] }],
        }),
      );
      const findings = lines(
        await doctor({ HOST: '127.0.0.1', SECRET_KEY: SECRET, COLLOQUY_CONFIG: routing }),
        'cloud.',
      );
      assert.deepEqual(
        findings.map((f) => [f.id, f.severity]),
        [['cloud.claude.billing', 'error']],
      );
      assert.match(findings[0]!.message, /^claude: .*credit balance is too low/);
      assert.equal(anthropic.requests.at(-1)?.path, '/v1/models');
    } finally {
      await anthropic.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
