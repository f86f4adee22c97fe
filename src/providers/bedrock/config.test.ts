import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { startFakeBedrock } from '../../../test/fake-upstream/clouds/bedrock.js';
import { type ConfigError, loadConfig } from '../../config/load-config.js';
import { readRoutingFile } from '../../config/routing-file.js';
import { checkCloudAccess, checkClouds } from '../../ops/doctor-clouds.js';
import { providerSecrets } from '../cloud-config.js';
import { createProviders } from '../registry.js';

const load = (env: Record<string, string>) =>
  loadConfig({ DEMO_WORD_DELAY_MS: '0', ...env }, { dotenvDir: null });

const KEY = { accessKeyId: 'AKIADOCTOR0000000000', secretAccessKey: 'doctor-secret-0123456789abcdef' };

describe('bedrock configured by environment alone', () => {
  it('AWS keys and AWS_REGION create `bedrock`; the endpoint override, the API key and secrets are read', () => {
    const config = load({
      AWS_ACCESS_KEY_ID: KEY.accessKeyId,
      AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
      AWS_SESSION_TOKEN: 'session-token-0123456789',
      AWS_REGION: 'eu-west-3',
      AWS_ENDPOINT_URL_BEDROCK_RUNTIME: 'https://vpce-123.bedrock-runtime.eu-west-3.vpce.amazonaws.com',
    });
    assert.equal(config.providers.cloud.bedrock?.region, 'eu-west-3');
    const bedrock = createProviders(config.providers).get(
      'bedrock',
    ) as import('./provider.js').BedrockProvider;
    assert.equal(bedrock.kind, 'bedrock');
    assert.equal(
      bedrock.url('amazon.nova-lite-v1:0', 'converse').href,
      'https://vpce-123.bedrock-runtime.eu-west-3.vpce.amazonaws.com/model/amazon.nova-lite-v1%3A0/converse',
    );
    const secrets = providerSecrets(config.providers);
    assert.ok(secrets.includes(KEY.secretAccessKey) && secrets.includes('session-token-0123456789'));
    const keyed = load({
      AWS_BEARER_TOKEN_BEDROCK: 'ABSK-bedrock-key-0123456789',
      AWS_DEFAULT_REGION: 'us-west-2',
    });
    assert.equal(keyed.providers.cloud.bedrock?.apiKey, 'ABSK-bedrock-key-0123456789');
    const url = (
      createProviders(keyed.providers).get('bedrock') as import('./provider.js').BedrockProvider
    ).url('amazon.titan-embed-text-v2:0', 'invoke');
    assert.equal(
      url.href,
      'https://bedrock-runtime.us-west-2.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke',
    );
    assert.equal(load({}).providers.cloud.bedrock, undefined, 'no AWS variables, no bedrock');
  });

  it('a half-configured Bedrock names what is missing', () => {
    assert.throws(
      () => load({ AWS_BEARER_TOKEN_BEDROCK: 'ABSK-bedrock-key-0123456789' }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('AWS_REGION: required for Bedrock')),
    );
    assert.throws(
      () => load({ AWS_ACCESS_KEY_ID: KEY.accessKeyId, AWS_REGION: 'us-east-1' }),
      (err: ConfigError) => err.problems.some((p) => p.startsWith('AWS_SECRET_ACCESS_KEY:')),
    );
    // A shell's AWS profile or keys for other AWS work, with no region: no bedrock, and no startup error.
    assert.equal(load({ AWS_PROFILE: 'dev' }).providers.cloud.bedrock, undefined);
    assert.equal(load({ AWS_ACCESS_KEY_ID: KEY.accessKeyId }).providers.cloud.bedrock, undefined);
    assert.equal(
      load({ AWS_PROFILE: 'dev', AWS_REGION: 'eu-west-1' }).providers.cloud.bedrock?.profile,
      'dev',
    );
  });

  it('the documented routing example has a Bedrock provider, and it validates', () => {
    const file = new URL('../../../docs/routing.example.yaml', import.meta.url).pathname;
    const env = { ANTHROPIC_API_KEY: 'a', AZURE_EU_API_KEY: 'b', MISTRAL_API_KEY: 'c' };
    const { value, problems } = readRoutingFile(file, env);
    assert.deepEqual(problems, []);
    assert.equal(
      createProviders({ ...load({}).providers, routing: value }).get('bedrock-us')?.kind,
      'bedrock',
    );
  });

  it('the routing file takes `type: bedrock` with a region, and needs the region', () => {
    const dir = mkdtempSync(`${tmpdir()}/colloquy-bedrock-`);
    try {
      const file = `${dir}/routing.json`;
      writeFileSync(
        file,
        JSON.stringify({
          providers: [
            { name: 'bedrock-eu', type: 'bedrock', region: 'eu-central-1', aws: { profile: 'prod' } },
            { name: 'bedrock-x', type: 'bedrock' },
          ],
        }),
      );
      assert.deepEqual(readRoutingFile(file, {}).problems, [
        'COLLOQUY_CONFIG: providers[1].region: a Bedrock provider needs its AWS region',
      ]);
      writeFileSync(
        file,
        JSON.stringify({
          providers: [{ name: 'bedrock-eu', type: 'bedrock', region: 'eu-central-1', api_key: 'k' }],
        }),
      );
      const { value, problems } = readRoutingFile(file, {});
      assert.deepEqual(problems, []);
      assert.equal(
        createProviders({ ...load({}).providers, routing: value }).get('bedrock-eu')?.kind,
        'bedrock',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('doctor: one line for bedrock — refused credentials name the AWS variables; accepted ones are ok', async () => {
    const fake = await startFakeBedrock({ region: 'us-east-1', keys: [KEY] });
    try {
      const run = async (secret: string) => {
        const config = load({
          AWS_ACCESS_KEY_ID: KEY.accessKeyId,
          AWS_SECRET_ACCESS_KEY: secret,
          AWS_REGION: 'us-east-1',
          AWS_ENDPOINT_URL_BEDROCK_RUNTIME: fake.url,
        });
        const lines: { id: string; message: string; fix: string }[] = [];
        await checkClouds(config, checkCloudAccess, 5_000, (id, _s, message, fix) =>
          lines.push({ id, message, fix }),
        );
        return lines;
      };
      const bad = await run('wrong-secret-0123456789abcdef');
      assert.deepEqual(
        bad.map((l) => l.id),
        ['cloud.bedrock.credentials'],
      );
      assert.match(bad[0]!.message, /^bedrock: .*InvalidSignatureException/);
      assert.match(bad[0]!.fix, /AWS_ACCESS_KEY_ID/);
      assert.doesNotMatch(bad[0]!.message, /wrong-secret/);
      const good = await run(KEY.secretAccessKey);
      assert.deepEqual(
        good.map((l) => l.id),
        ['cloud.bedrock.ok'],
      );
    } finally {
      await fake.close();
    }
  });
});

describe('Bedrock prices', () => {
  it('model ids with their version suffix and US inference profiles find their price', async () => {
    const { PriceTable } = await import('../../features/usage/prices.js');
    const prices = new PriceTable();
    assert.deepEqual(prices.priceOf('amazon.nova-lite-v1:0'), { input: 0.06, output: 0.24 });
    assert.deepEqual(prices.priceOf('us.anthropic.claude-3-5-sonnet-20240620-v1:0'), {
      input: 3,
      output: 15,
    });
    assert.equal(prices.cost('anthropic.claude-3-haiku-20240307-v1:0', 1_000_000, 1_000_000), 1.5);
  });
});
