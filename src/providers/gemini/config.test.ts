import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { type ConfigError, loadConfig } from '../../config/load-config.js';
import { readRoutingFile } from '../../config/routing-file.js';
import { providerSecrets } from '../cloud-config.js';
import { createProviders } from '../registry.js';

const load = (env: Record<string, string>) =>
  loadConfig({ DEMO_WORD_DELAY_MS: '0', ...env }, { dotenvDir: null });

describe('Google clouds configured by environment or routing file', () => {
  it('GEMINI_API_KEY creates `gemini`; VERTEX_PROJECT creates `vertex` (location us-central1 by default)', () => {
    const config = load({ GEMINI_API_KEY: 'gemini-key-0123456789', VERTEX_PROJECT: 'proj' });
    const providers = createProviders(config.providers);
    assert.equal(providers.get('gemini')?.kind, 'gemini');
    assert.equal(providers.get('vertex')?.kind, 'vertex');
    assert.equal(config.providers.cloud.vertex?.location, 'us-central1');
    assert.equal(config.providers.cloud.vertex?.credentialsFile, undefined);
    assert.ok(providerSecrets(config.providers).includes('gemini-key-0123456789'));
  });

  it('COHERE_API_KEY creates `cohere`; COHERE_BASE_URL alone is a problem', () => {
    const config = load({ COHERE_API_KEY: 'cohere-key-0123456789' });
    assert.equal(createProviders(config.providers).get('cohere')?.kind, 'cohere');
    assert.ok(providerSecrets(config.providers).includes('cohere-key-0123456789'));
    assert.throws(
      () => load({ COHERE_BASE_URL: 'http://127.0.0.1:1' }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('COHERE_API_KEY: required')),
    );
  });

  it('half-configured Google clouds name what is missing', () => {
    assert.throws(
      () => load({ GEMINI_BASE_URL: 'http://127.0.0.1:1' }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('GEMINI_API_KEY: required')),
    );
    assert.throws(
      () => load({ VERTEX_LOCATION: 'europe-west4' }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('VERTEX_PROJECT: required')),
    );
  });

  it('routing-file entries of type gemini and vertex, with what each needs checked', () => {
    const dir = mkdtempSync(`${tmpdir()}/colloquy-google-`);
    try {
      const file = `${dir}/routing.json`;
      writeFileSync(
        file,
        JSON.stringify({
          providers: [
            { name: 'gem', type: 'gemini', api_key: '$'.concat('{GEMINI_KEY}') },
            { name: 'vtx', type: 'vertex', project: 'p', location: 'global', credentials_file: '/sa.json' },
          ],
        }),
      );
      const { value, problems } = readRoutingFile(file, { GEMINI_KEY: 'k' });
      assert.deepEqual(problems, []);
      const providers = createProviders({ ...load({}).providers, routing: value });
      assert.equal(providers.get('gem')?.kind, 'gemini');
      assert.equal(providers.get('vtx')?.kind, 'vertex');
      writeFileSync(
        file,
        JSON.stringify({
          providers: [
            { name: 'gem', type: 'gemini' },
            { name: 'vtx', type: 'vertex' },
          ],
        }),
      );
      assert.deepEqual(readRoutingFile(file, {}).problems, [
        'COLLOQUY_CONFIG: providers[0].api_key: a Gemini provider needs its API key',
        'COLLOQUY_CONFIG: providers[1].project: a Vertex AI provider needs its project',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
