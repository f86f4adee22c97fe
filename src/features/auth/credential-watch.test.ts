import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AppError } from '../../core/errors.js';
import { CredentialWatch } from './credential-watch.js';
import type { Principal } from './principal.js';

const key = (id: string, userId = 'usr_1'): Principal => ({
  userId,
  role: 'user',
  via: 'api_key',
  apiKeyId: id,
});
const jwt = (userId: string, expiresAt?: number): Principal => ({
  userId,
  role: 'user',
  via: 'jwt',
  apiKeyId: null,
  expiresAt,
});

/** Resolves with the reason `end` is called with (bounded by a deadline). */
function ended() {
  let resolve!: (reason: AppError) => void;
  const promise = new Promise<AppError>((r) => {
    resolve = r;
  });
  return { end: resolve, promise };
}

describe('CredentialWatch', () => {
  it('ends what a revoked key holds open, after checking it, once per credential; other keys stay', async () => {
    const checked: string[] = [];
    const watch = new CredentialWatch({
      stillValid: async (p) => {
        checked.push(p.apiKeyId ?? '');
        return p.apiKeyId !== 'key_revoked';
      },
    });
    const first = ended();
    const second = ended();
    let otherEnded = false;
    watch.watch(key('key_revoked'), first.end);
    watch.watch(key('key_revoked'), second.end);
    watch.watch(key('key_other'), () => {
      otherEnded = true;
    });
    watch.notice('key', 'key_revoked');
    assert.equal((await first.promise).code, 'invalid_api_key');
    assert.equal((await second.promise).code, 'invalid_api_key');
    assert.deepEqual(checked, ['key_revoked'], 'one database check for both streams');
    assert.equal(otherEnded, false);
    assert.equal(watch.size, 1);
  });

  it('ends nothing when the credential is still valid (a role change), and nothing once unwatched', async () => {
    let calls = 0;
    const watch = new CredentialWatch({
      stillValid: async () => {
        calls++;
        return true;
      },
    });
    let endedCount = 0;
    const unwatch = watch.watch(jwt('usr_2'), () => endedCount++);
    watch.notice('user', 'usr_2');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(endedCount, 0);
    unwatch();
    watch.notice('user', 'usr_2');
    assert.equal(calls, 1, 'an unwatched stream is not checked');
    assert.equal(watch.size, 0);
  });

  it('ends a stream when its access token expires (only when asked to watch the expiry)', async () => {
    const watch = new CredentialWatch({ stillValid: async () => true });
    const expiring = ended();
    let ignoredEnded = false;
    watch.watch(jwt('usr_3', Date.now() + 30), expiring.end, { expiry: true });
    watch.watch(jwt('usr_3', Date.now() + 30), () => {
      ignoredEnded = true;
    });
    // The watch's timer does not hold the process open; this one does, for the test.
    const keepAlive = setTimeout(() => {}, 5_000);
    const reason = await expiring.promise.finally(() => clearTimeout(keepAlive));
    assert.equal(reason.code, 'invalid_token');
    assert.match(reason.message, /expired/);
    assert.equal(ignoredEnded, false);
  });

  it('never watches the master key', () => {
    const watch = new CredentialWatch({ stillValid: async () => false });
    watch.watch({ userId: null, role: 'admin', via: 'master_key', apiKeyId: null }, () => {
      throw new Error('must not end');
    });
    assert.equal(watch.size, 0);
  });
});
