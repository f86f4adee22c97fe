import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Expiring, REFRESH_MARGIN_MS, RefreshingCredential } from './refreshing-credential.js';

/** The renewal rules the Azure (Entra ID), Vertex (Google) and Bedrock (AWS) credentials share. */
describe('RefreshingCredential', () => {
  const HOUR = 3_600_000;

  function source(lifetimeMs: number | undefined, withIssuedAt = true) {
    const state = { clock: 0, fetches: 0, fail: false };
    const credential = new RefreshingCredential<string>(
      async (): Promise<Expiring<string>> => {
        state.fetches++;
        if (state.fail) throw new Error('token endpoint down');
        const issuedAt = state.clock;
        return {
          value: `token-${state.fetches}`,
          expiresAt: lifetimeMs === undefined ? undefined : issuedAt + lifetimeMs,
          ...(withIssuedAt ? { issuedAt } : {}),
        };
      },
      { now: () => state.clock },
    );
    return { state, credential };
  }

  it('cached until the margin before expiry, then renewed before any call uses a lapsing one', async () => {
    const { state, credential } = source(HOUR);
    assert.equal(await credential.get(), 'token-1');
    state.clock = HOUR - REFRESH_MARGIN_MS - 1;
    assert.equal(await credential.get(), 'token-1');
    state.clock = HOUR - REFRESH_MARGIN_MS;
    assert.equal(await credential.get(), 'token-2');
    assert.equal(credential.current, 'token-2');
  });

  it('a short-lived credential is renewed at half its lifetime (when its issue time is known)', async () => {
    const { state, credential } = source(4 * 60_000);
    await credential.get();
    state.clock = 2 * 60_000 - 1;
    assert.equal(await credential.get(), 'token-1');
    state.clock = 2 * 60_000;
    assert.equal(await credential.get(), 'token-2');
    const keys = source(4 * 60_000, false);
    await keys.credential.get();
    keys.state.clock = 1;
    assert.equal(await keys.credential.get(), 'token-2', 'without it, the margin alone: renewed at once');
  });

  it('concurrent callers share one renewal; a credential without expiry is fetched once', async () => {
    const { state, credential } = source(HOUR);
    const got = await Promise.all([credential.get(), credential.get(), credential.get()]);
    assert.deepEqual(got, ['token-1', 'token-1', 'token-1']);
    assert.equal(state.fetches, 1);
    const fixed = source(undefined);
    fixed.state.clock = 10 * 365 * 24 * HOUR;
    await fixed.credential.get();
    await fixed.credential.get();
    assert.equal(fixed.state.fetches, 1);
  });

  it('a failed renewal keeps a still-valid credential, and fails once it has expired', async () => {
    const { state, credential } = source(HOUR);
    await credential.get();
    state.fail = true;
    state.clock = HOUR - 60_000;
    assert.equal(await credential.get(), 'token-1');
    state.clock = HOUR;
    await assert.rejects(credential.get(), /token endpoint down/);
    state.fail = false;
    assert.equal(await credential.get(), 'token-4', 'the next call tries again');
  });
});
