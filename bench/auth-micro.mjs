// Authentication of a cached API key and of the master key, in-process, for two builds (issue 26):
//   node bench/auth-micro.mjs /path/to/baseline-checkout before; node bench/auth-micro.mjs . after
// Each checkout must be built (dist/). The end-to-end bench cannot resolve a few µs on a loaded machine.
import { createHash, randomBytes } from 'node:crypto';

const [root = '.', label = root] = process.argv.slice(2);
const { resolve } = await import('node:path');
const base = resolve(root);
const { AuthService } = await import(`${base}/dist/features/auth/service.js`);
const { ApiKeyStore } = await import(`${base}/dist/features/api-keys/store.js`);
const { UsableKeyCache } = await import(`${base}/dist/features/api-keys/usable-key-cache.js`);
const key = `ck-${randomBytes(32).toString('base64url')}`;
const hash = createHash('sha256').update(key).digest('hex');
const cache = new UsableKeyCache({ ttlMs: 1e9 });
await cache.get(hash, async () => ({
  keyId: 'key_1',
  userId: 'usr_1',
  role: 'user',
  lastUsedAt: new Date().toISOString(),
  expiresAt: null,
  cacheResponses: false,
}));
const auth = new AuthService({
  users: {},
  apiKeys: new ApiKeyStore(null, cache),
  refreshTokens: {},
  accessTokens: {},
  throttle: {},
  masterKey: 'master-key-0123456789abcdef',
});
const header = `Bearer ${key}`;
const master = 'Bearer master-key-0123456789abcdef';
// What the hook does: the new build through the sync path when it has it, the old one awaits.
const run = auth.resolve
  ? (h) => {
      const r = auth.resolve(h);
      return r instanceof Promise ? r : undefined;
    }
  : (h) => auth.authenticate(h);
for (const [name, h] of [
  ['api key', header],
  ['master key', master],
]) {
  for (let i = 0; i < 50000; i++) {
    const p = run(h);
    if (p) await p;
  }
  const N = 200000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const p = run(h);
    if (p) await p;
  }
  const ns = Number(process.hrtime.bigint() - t0) / N;
  console.log(`${label} ${name}: ${(ns / 1000).toFixed(2)} µs/auth`);
}
