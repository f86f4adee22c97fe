import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { type ConfigError, loadConfig } from '../config/load-config.js';
import { createLogger } from '../core/logger.js';
import { logSecrets } from '../server.js';
import { providerSecrets } from './cloud-config.js';
import { createProviders } from './registry.js';

const load = (env: Record<string, string>) =>
  loadConfig({ DEMO_WORD_DELAY_MS: '0', ...env }, { dotenvDir: null });

describe('clouds configured by environment', () => {
  it('AZURE_OPENAI_* creates `azure` with a key, or with Entra ID client credentials', () => {
    const withKey = load({
      AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com',
      AZURE_OPENAI_API_KEY: 'k'.repeat(32),
    });
    assert.equal(createProviders(withKey.providers).get('azure')?.kind, 'azure');
    const entra = load({
      AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com',
      AZURE_TENANT_ID: 't',
      AZURE_CLIENT_ID: 'c',
      AZURE_CLIENT_SECRET: 's'.repeat(20),
    });
    assert.equal(entra.providers.cloud.azure?.entra?.tenantId, 't');
  });

  it('a half-configured Azure names what is missing', () => {
    assert.throws(
      () => load({ AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com', AZURE_TENANT_ID: 't' }),
      (err: ConfigError) =>
        err.problems.some((p) =>
          /AZURE_OPENAI_ENDPOINT: set AZURE_OPENAI_API_KEY, or AZURE_TENANT_ID/.test(p),
        ),
    );
    assert.throws(
      () => load({ AZURE_OPENAI_API_KEY: 'k'.repeat(32) }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('AZURE_OPENAI_ENDPOINT: required')),
    );
    assert.throws(
      () => load({ AZURE_OPENAI_API_VERSION: 'latest' }),
      (err: ConfigError) =>
        err.problems.some((p) => p.startsWith('AZURE_OPENAI_API_VERSION: expected v1, preview')),
    );
  });

  it('local presets come from their base URL; keyed ones from their key', () => {
    const config = load({ OLLAMA_BASE_URL: 'http://127.0.0.1:11434/v1', XAI_API_KEY: 'xai-0123456789' });
    assert.deepEqual(
      config.providers.cloud.presets.map((p) => p.preset),
      ['xai', 'ollama'],
    );
  });

  it("the server's logger scrubs every provider key wherever it appears in a line", () => {
    const secrets = {
      AZURE_OPENAI_API_KEY: 'azure-secret-key-0123456789',
      MISTRAL_API_KEY: 'mistral-secret-key-0123456789',
      HUGGINGFACE_API_KEY: 'hf_secretToken0123456789',
    };
    const config = load({ AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com', ...secrets });
    assert.deepEqual([...providerSecrets(config.providers)].sort(), Object.values(secrets).sort());
    let text = '';
    const destination = new Writable({
      write(chunk, _enc, done) {
        text += String(chunk);
        done();
      },
    });
    const logger = createLogger({ level: 'debug', format: 'json', secrets: logSecrets(config), destination });
    for (const value of Object.values(secrets)) {
      logger.warn(`upstream said: bad key ${value}`);
      logger.error({ err: new Error(`refused ${value}`) }, 'call failed');
    }
    for (const value of Object.values(secrets)) assert.ok(!text.includes(value), `${value} leaked`);
    assert.match(text, /\[REDACTED\]/);
  });
});

describe('clouds in the routing file', () => {
  it('the documented example validates, its cloud providers included', async () => {
    const { readRoutingFile } = await import('../config/routing-file.js');
    const file = new URL('../../docs/routing.example.yaml', import.meta.url).pathname;
    const env = { ANTHROPIC_API_KEY: 'a', AZURE_EU_API_KEY: 'b', MISTRAL_API_KEY: 'c' };
    const { value, problems } = readRoutingFile(file, env);
    assert.deepEqual(problems, []);
    const providers = createProviders({ ...load({}).providers, routing: value });
    assert.equal(providers.get('azure-eu')?.kind, 'azure');
    assert.equal(providers.get('mistral')?.kind, 'openai');
  });

  it('an Azure provider without its endpoint or credentials is a problem naming the entry', async () => {
    const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
    const { readRoutingFile } = await import('../config/routing-file.js');
    const dir = mkdtempSync(`${(await import('node:os')).tmpdir()}/colloquy-azure-`);
    try {
      const file = `${dir}/routing.json`;
      writeFileSync(file, JSON.stringify({ providers: [{ name: 'az', type: 'azure' }] }));
      const { problems } = readRoutingFile(file, {});
      assert.deepEqual(problems, [
        'COLLOQUY_CONFIG: providers[0].base_url: an Azure provider needs its resource endpoint',
        'COLLOQUY_CONFIG: providers[0]: an Azure provider needs api_key or entra',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("Azure's api-version selects the path: dated → deployments, preview → v1 with ?api-version=preview", async () => {
    const { AzureOpenAiProvider } = await import('./azure/provider.js');
    const endpoint = 'https://res.openai.azure.com';
    const dated = new AzureOpenAiProvider({ endpoint, apiVersion: '2025-04-01-preview', apiKey: 'k' });
    assert.equal(
      dated.url('chat/completions', 'my deployment').href,
      'https://res.openai.azure.com/openai/deployments/my%20deployment/chat/completions?api-version=2025-04-01-preview',
    );
    const preview = new AzureOpenAiProvider({ endpoint, apiVersion: 'preview', apiKey: 'k' });
    assert.equal(
      preview.url('embeddings', 'x').href,
      'https://res.openai.azure.com/openai/v1/embeddings?api-version=preview',
    );
  });
});
