import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWellFormedDsn } from './dsn.js';
import { FILTERED, scrubEvent, scrubText } from './scrub.js';

describe('error-tracking scrubbing', () => {
  it('drops request content, headers, breadcrumbs and local variables; masks credentials; keeps ids', () => {
    const event = {
      message: 'failed for postgres://app:db-password-123@db:5432/colloquy with Bearer ck_live_abcdef123456',
      request: {
        url: '/v1/chat',
        data: '{"messages":[{"content":"secret prompt"}]}',
        headers: { cookie: 'a=b' },
      },
      extra: { body: 'secret prompt' },
      breadcrumbs: [{ message: 'GET https://api.example.com/?key=AIzaSecret' }],
      user: { id: 'usr_1', email: 'someone@example.com', ip_address: '10.0.0.1' },
      tags: { api_key_id: 'key_1', request_id: 'req_1' },
      contexts: { app: { authorization: 'Basic dXNlcjpwYXNz', session_token: 'tok', messages: ['prompt'] } },
      exception: {
        values: [
          {
            value: 'provider said: invalid key sk-proj-abcdefghijklmnop and my-configured-secret-value',
            stacktrace: { frames: [{ function: 'f', vars: { prompt: 'secret prompt' } }] },
          },
        ],
      },
    };
    const out = scrubEvent(event, ['my-configured-secret-value']);
    const text = JSON.stringify(out);
    for (const leaked of [
      'secret prompt',
      'db-password-123',
      'ck_live_abcdef123456',
      'AIzaSecret',
      'someone@example.com',
      '10.0.0.1',
      'dXNlcjpwYXNz',
      'sk-proj-abcdefghijklmnop',
      'my-configured-secret-value',
      '"tok"',
    ]) {
      assert.ok(!text.includes(leaked), `${leaked} must be scrubbed: ${text}`);
    }
    assert.equal(out.request, undefined);
    assert.equal(out.breadcrumbs, undefined);
    assert.deepEqual(out.user, { id: 'usr_1' });
    assert.deepEqual(out.tags, { api_key_id: 'key_1', request_id: 'req_1' });
    assert.equal(out.contexts.app.authorization, FILTERED);
    assert.equal(out.message, `failed for postgres://${FILTERED}@db:5432/colloquy with Bearer ${FILTERED}`);
  });

  it('masks credentials in query strings', () => {
    assert.equal(scrubText('GET /x?key=abc&model=m', []), `GET /x?key=${FILTERED}&model=m`);
  });

  it('recognises well-formed Sentry and GlitchTip DSNs', () => {
    assert.ok(isWellFormedDsn('https://0123abcd@o1.ingest.sentry.io/42'));
    assert.ok(isWellFormedDsn('https://key:secret@glitchtip.example.com/3'));
    assert.ok(isWellFormedDsn('http://key@127.0.0.1:9000/sub/path/7'));
    assert.ok(!isWellFormedDsn('https://sentry.example.com/42'), 'no public key');
    assert.ok(!isWellFormedDsn('https://key@sentry.example.com/'), 'no project id');
    assert.ok(!isWellFormedDsn('sentry.example.com'));
  });
});
