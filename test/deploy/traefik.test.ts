// deploy/traefik: Traefik is in neither Debian nor npm, so its files are checked structurally here (the
// Traefik v3 reference: https://doc.traefik.io/traefik/reference/), not run.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readYaml } from './helpers.js';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, walked by the assertions below
type Obj = Record<string, any>;

describe('Traefik (deploy/traefik)', () => {
  const stat = readYaml<Obj>('deploy/traefik/traefik.yml');
  const dyn = readYaml<Obj>('deploy/traefik/dynamic.yml');

  it('redirects port 80 to HTTPS and gets certificates from Let’s Encrypt over port 80', () => {
    assert.equal(stat.entryPoints.web.address, ':80');
    assert.deepEqual(stat.entryPoints.web.http.redirections.entryPoint, {
      to: 'websecure',
      scheme: 'https',
      permanent: true,
    });
    assert.equal(stat.entryPoints.websecure.address, ':443');
    const acme = stat.certificatesResolvers[stat.entryPoints.websecure.http.tls.certResolver].acme;
    assert.equal(acme.httpChallenge.entryPoint, 'web');
    assert.match(acme.storage, /acme\.json$/);
    assert.equal(stat.providers.file.filename, '/etc/traefik/dynamic.yml');
    // Long streams are not cut by a response deadline.
    assert.equal(stat.entryPoints.websecure.transport.respondingTimeouts.writeTimeout, '0s');
    assert.equal(stat.accessLog.fields.headers.names.Authorization, 'drop');
  });

  it('balances over every compose replica with health checks, sticky cookies, rate limits and HSTS', () => {
    const compose = readYaml<{ services: Record<string, unknown> }>('compose.yaml');
    const replicas = Object.keys(compose.services).filter((s) => /^colloquy-\d+$/.test(s));
    const lb = dyn.http.services.colloquy.loadBalancer;
    assert.deepEqual(
      lb.servers.map((s: { url: string }) => s.url),
      replicas.map((r) => `http://${r}:8000`),
    );
    assert.equal(lb.healthCheck.path, '/health/ready');
    assert.equal(lb.sticky.cookie.secure, true);
    assert.equal(lb.sticky.cookie.httpOnly, true);
    assert.ok(lb.responseForwarding.flushInterval);
    for (const [name, router] of Object.entries<Obj>(dyn.http.routers)) {
      assert.equal(router.service, 'colloquy', name);
      assert.deepEqual(router.entryPoints, ['websecure'], name);
      assert.ok(router.tls.certResolver in stat.certificatesResolvers, name);
      for (const m of router.middlewares) assert.ok(m in dyn.http.middlewares, `${name}: middleware ${m}`);
      assert.ok(router.middlewares.includes('colloquy-headers'), `${name}: HSTS`);
    }
    assert.ok(dyn.http.routers.colloquy.middlewares.includes('colloquy-ratelimit'));
    assert.ok(!dyn.http.routers['colloquy-health'].middlewares.includes('colloquy-ratelimit'));
    assert.ok(dyn.http.middlewares['colloquy-ratelimit'].rateLimit.average > 0);
    assert.equal(dyn.http.middlewares['colloquy-headers'].headers.stsSeconds, 31536000);
  });
});
