import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AwsCredentials, REFRESH_BEFORE_MS } from './auth.js';

describe('AwsCredentials cache', () => {
  const start = Date.parse('2026-01-01T00:00:00Z');
  const creds = (id: string, expiresAt: number) => ({
    accessKeyId: id,
    secretAccessKey: `${id}-secret`,
    expiration: new Date(expiresAt),
  });

  it('concurrent calls share one fetch; a refresh comes only inside the window before expiry', async () => {
    let clock = start;
    let fetched = 0;
    const cache = new AwsCredentials(
      async () => creds(`K${++fetched}`, clock + 3_600_000),
      () => clock,
    );
    const [a, b] = await Promise.all([cache.get(), cache.get()]);
    assert.equal(fetched, 1);
    assert.equal(a.accessKeyId, b.accessKeyId);
    clock += 3_600_000 - REFRESH_BEFORE_MS - 1;
    assert.equal((await cache.get()).accessKeyId, 'K1');
    clock += 2;
    assert.equal((await cache.get()).accessKeyId, 'K2');
  });

  it('a failed refresh keeps still-valid credentials; once they have expired the failure surfaces', async () => {
    let clock = start;
    let calls = 0;
    const cache = new AwsCredentials(
      async () => {
        if (++calls > 1) throw new Error('STS is down');
        return creds('K1', start + 3_600_000);
      },
      () => clock,
    );
    await cache.get();
    clock = start + 3_600_000 - 60_000; // inside the refresh window, still valid
    assert.equal((await cache.get()).accessKeyId, 'K1');
    assert.equal(calls, 2, 'a refresh was tried');
    clock = start + 3_600_000 + 1;
    await assert.rejects(cache.get(), /STS is down/);
  });
});
