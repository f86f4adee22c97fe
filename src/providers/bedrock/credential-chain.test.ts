import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type FakeBedrock, startFakeBedrock } from '../../../test/fake-upstream/clouds/bedrock.js';
import { type FakeServer, startServer } from '../../../test/fake-upstream/clouds/wire.js';
import { CallController } from '../../core/call-signal.js';
import { AwsCredentials } from './auth.js';
import { BedrockProvider } from './provider.js';

/**
 * The AWS SDK's standard credential chain, wired end to end: a shared-credentials profile, and a web identity
 * (what EKS IRSA sets) exchanged at a fake STS (AssumeRoleWithWebIdentity,
 * https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRoleWithWebIdentity.html: a form POST,
 * an XML answer with Credentials). The chain reads process.env itself: the variables are set for this file
 * only (each test file runs in its own process) and restored after.
 */

const options = () => ({
  signal: new CallController().signal,
  requestId: 'req_chain',
  timeouts: { connectMs: 2_000, firstTokenMs: 5_000, idleMs: 5_000, totalMs: 30_000 },
});
const ask = { model: 'amazon.nova-lite-v1:0', messages: [{ role: 'user' as const, content: 'Hi' }] };

const PROFILE_KEY = {
  accessKeyId: 'AKIAPROFILE000000000',
  secretAccessKey: 'profile-secret-0123456789abcdef',
};
const ROLE_KEY = {
  accessKeyId: 'ASIAWEBIDENTITY00000',
  secretAccessKey: 'web-identity-secret-0123456789',
  sessionToken: 'web-identity-session-token',
};

describe('the AWS credential chain', () => {
  let dir: string;
  let fake: FakeBedrock;
  let sts: FakeServer;
  const saved = { ...process.env };

  before(async () => {
    dir = mkdtempSync(`${tmpdir()}/colloquy-aws-`);
    fake = await startFakeBedrock({ region: 'us-east-1', keys: [PROFILE_KEY, ROLE_KEY] });
    sts = await startServer((req, res) => {
      const form = new URLSearchParams(req.text);
      if (
        form.get('Action') !== 'AssumeRoleWithWebIdentity' ||
        form.get('WebIdentityToken') !== 'eks-oidc-token'
      ) {
        res.writeHead(400, { 'content-type': 'text/xml' });
        res.end(
          '<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad</Message></Error></ErrorResponse>',
        );
        return;
      }
      const expiration = new Date(Date.now() + 3_600_000).toISOString();
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(`<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:colloquy:colloquy</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/colloquy/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>${ROLE_KEY.accessKeyId}</AccessKeyId>
      <SecretAccessKey>${ROLE_KEY.secretAccessKey}</SecretAccessKey>
      <SessionToken>${ROLE_KEY.sessionToken}</SessionToken>
      <Expiration>${expiration}</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>`);
    });
    for (const name of Object.keys(process.env)) if (name.startsWith('AWS_')) delete process.env[name];
    writeFileSync(
      `${dir}/credentials`,
      `[bedrock-prod]\naws_access_key_id = ${PROFILE_KEY.accessKeyId}\naws_secret_access_key = ${PROFILE_KEY.secretAccessKey}\n`,
    );
    writeFileSync(`${dir}/config`, '[profile bedrock-prod]\nregion = us-east-1\n');
    writeFileSync(`${dir}/token`, 'eks-oidc-token');
    process.env.AWS_SHARED_CREDENTIALS_FILE = `${dir}/credentials`;
    process.env.AWS_CONFIG_FILE = `${dir}/config`;
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
  });
  after(async () => {
    process.env = saved;
    await fake?.close();
    await sts?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a named profile from the shared credentials file signs the request', async () => {
    const bedrock = new BedrockProvider({
      region: 'us-east-1',
      baseUrl: fake.url,
      credentials: AwsCredentials.fromConfig({ profile: 'bedrock-prod' }),
    });
    await bedrock.complete(ask, options());
    assert.match(String(fake.requests.at(-1)!.headers.authorization), /Credential=AKIAPROFILE000000000\//);
    assert.deepEqual(fake.refused, []);
  });

  it('a web identity token (EKS IRSA) is exchanged at STS and the role credentials sign the request', async () => {
    process.env.AWS_WEB_IDENTITY_TOKEN_FILE = `${dir}/token`;
    process.env.AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/colloquy';
    process.env.AWS_ROLE_SESSION_NAME = 'colloquy';
    process.env.AWS_REGION = 'us-east-1';
    process.env.AWS_ENDPOINT_URL_STS = sts.url;
    const bedrock = new BedrockProvider({
      region: 'us-east-1',
      baseUrl: fake.url,
      credentials: AwsCredentials.fromConfig({}),
    });
    await bedrock.complete(ask, options());
    const sent = fake.requests.at(-1)!;
    assert.match(String(sent.headers.authorization), /Credential=ASIAWEBIDENTITY00000\//);
    assert.equal(sent.headers['x-amz-security-token'], ROLE_KEY.sessionToken);
    assert.equal(sts.requests.length, 1);
    await bedrock.complete(ask, options());
    assert.equal(sts.requests.length, 1, 'cached until it nears expiry');
    assert.deepEqual(fake.refused, []);
  });
});
