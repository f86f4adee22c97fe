import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  assertRan,
  envDefault,
  makeCertificate,
  nginxArgs,
  read,
  readYaml,
  renderNginx,
  requireTool,
  run,
} from './helpers.js';

const template = read('deploy/nginx/templates/colloquy.conf.template');
const main = read('deploy/nginx/nginx.conf');

/** The body of `location <pattern> { … }` in the TLS server (the last server block). */
function location(pattern: string): string {
  const tls = template.slice(template.lastIndexOf('server {'));
  const start = tls.indexOf(`location ${pattern} {`);
  assert.ok(start >= 0, `no location ${pattern} in the TLS server`);
  return tls.slice(start, tls.indexOf('\n  }', start));
}

describe('nginx (deploy/nginx)', () => {
  it('passes `nginx -t` rendered with test certificates and local upstreams', (t) => {
    const nginx = requireTool(t, 'nginx');
    if (!nginx) return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-nginx-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tls = makeCertificate(t, dir);
    if (!tls) return;
    const render = renderNginx({
      dir,
      upstreams: ['127.0.0.1:18001', '127.0.0.1:18002', '127.0.0.1:18003'],
      httpPort: 18080,
      httpsPort: 18443,
      ...tls,
    });
    const result = run(nginx, ['-t', ...nginxArgs(render)]);
    assertRan(result, 'nginx -t');
    assert.match(result.stderr, /syntax is ok/);
    assert.match(result.stderr, /test is successful/);
    // The rendered file really is the kit's: the upstream and both servers are in it.
    const rendered = readFileSync(path.join(dir, 'colloquy.d', 'colloquy.conf'), 'utf8');
    assert.match(rendered, /server 127\.0\.0\.1:18003 max_fails=2 fail_timeout=10s;/);
    assert.match(rendered, new RegExp(`ssl_certificate ${tls.cert.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')};`));
  });

  it('balances over the three compose replicas with keep-alive shorter than the app’s', () => {
    const compose = readYaml<{ services: Record<string, unknown> }>('compose.yaml');
    const replicas = Object.keys(compose.services).filter((s) => /^colloquy-\d+$/.test(s));
    const servers = [...template.matchAll(/^\s*server (colloquy-\d+):(\d+) /gm)];
    assert.deepEqual(
      servers.map((m) => m[1]),
      replicas,
      'the upstream lists exactly the compose replica services',
    );
    for (const m of servers) assert.equal(m[2], String(Number(envDefault('PORT'))));
    assert.match(template, /keepalive \d+;/);
    const idle = Number(/keepalive_timeout (\d+)s;/.exec(template)?.[1]);
    const appIdleMs = Number(envDefault('KEEP_ALIVE_TIMEOUT_MS'));
    assert.ok(
      idle * 1000 < appIdleMs,
      `nginx closes idle upstream connections (${idle}s) before Colloquy (${appIdleMs}ms)`,
    );
  });

  it('retries only what is safe: connect errors for all, sent requests only when idempotent', () => {
    const failover = /proxy_next_upstream ([^;]+);/.exec(
      template.slice(template.lastIndexOf('server {')),
    )?.[1];
    assert.ok(failover, 'no proxy_next_upstream in the TLS server');
    const conditions = failover.split(/\s+/);
    assert.ok(conditions.includes('error') && conditions.includes('timeout'));
    assert.ok(!conditions.includes('non_idempotent'), 'POSTs must never be replayed once sent');
    assert.match(template, /proxy_next_upstream_tries \d+;/);
    // Bodies are buffered (the default) so a request whose connection failed can be sent to another replica.
    assert.doesNotMatch(template + main, /proxy_request_buffering off/);
  });

  it('streams SSE and WebSockets unbuffered, never gzips event streams', () => {
    const api = location('~ ^/(v1|api)/');
    assert.match(api, /proxy_buffering off;/);
    assert.match(api, /proxy_read_timeout 3600s;/);
    assert.match(api, /proxy_set_header Connection "";/);
    const ws = location('~ ^/api/conversations/[^/]+/ws$');
    assert.match(ws, /proxy_set_header Upgrade \$http_upgrade;/);
    assert.match(ws, /proxy_set_header Connection \$connection_upgrade;/);
    assert.match(ws, /proxy_read_timeout 3600s;/);
    assert.match(main, /map \$http_upgrade \$connection_upgrade/);
    const gzipTypes = /gzip_types([^;]+);/.exec(main)?.[1] ?? '';
    assert.match(gzipTypes, /application\/json/);
    assert.doesNotMatch(gzipTypes, /event-stream/);
    assert.match(main, /^\s*gzip on;/m);
  });

  it('keeps health checks out of the access log and /metrics off the edge', () => {
    assert.match(location('~ ^/health(/live|/ready)?$'), /access_log off;/);
    assert.match(location('= /metrics'), /return 404;/);
  });

  it('passes X-Request-Id through (nginx’s $request_id when absent) and logs it', () => {
    assert.match(main, /map \$http_x_request_id \$colloquy_request_id/);
    assert.match(main, /default \$request_id;/);
    assert.match(
      read('deploy/nginx/snippets/colloquy-proxy-headers.conf'),
      /proxy_set_header X-Request-Id \$colloquy_request_id;/,
    );
    assert.match(main, /"request_id":"\$colloquy_request_id"/);
    // The map keeps exactly the ids Colloquy keeps (src/app.ts), so both sides log the same one.
    const appPattern = /const REQUEST_ID = \/(.+)\/;/.exec(read('src/app.ts'))?.[1];
    assert.ok(appPattern, 'REQUEST_ID not found in src/app.ts');
    assert.ok(main.includes(`"~${appPattern}"`), `nginx keeps ids matching ${appPattern}`);
  });

  it('rate-limits, sets security headers and a TLS server with certificate placeholders', () => {
    assert.match(main, /limit_req_zone \$binary_remote_addr zone=colloquy_per_ip:\S+ rate=\d+r\/s;/);
    assert.match(main, /limit_req_status 429;/);
    for (const pattern of ['~ ^/(v1|api)/', '~ ^/api/conversations/[^/]+/ws$', '/'])
      assert.match(
        location(pattern),
        /limit_req zone=colloquy_per_ip burst=\d+ nodelay;/,
        `location ${pattern} is rate-limited`,
      );
    assert.doesNotMatch(
      location('~ ^/health(/live|/ready)?$'),
      /limit_req/,
      'health checks are never rate-limited',
    );
    assert.match(template, /listen 443 ssl/);
    assert.match(template, /ssl_certificate \$\{NGINX_TLS_CERTIFICATE\};/);
    assert.match(template, /ssl_certificate_key \$\{NGINX_TLS_CERTIFICATE_KEY\};/);
    const headers = read('deploy/nginx/snippets/colloquy-security-headers.conf');
    for (const h of [
      'Strict-Transport-Security',
      'X-Content-Type-Options',
      'X-Frame-Options',
      'Referrer-Policy',
      'X-Request-Id',
    ]) {
      assert.match(headers, new RegExp(`add_header ${h} .* always;`));
      // …and the replica's copy is hidden, or clients would get the header twice.
      assert.match(template, new RegExp(`proxy_hide_header ${h};`));
    }
  });

  it('limits bodies to MAX_BODY_SIZE: the same variable feeds nginx and the replicas', () => {
    assert.match(template, /client_max_body_size \$\{NGINX_MAX_BODY_SIZE\};/);
    const compose = readYaml<{ services: Record<string, { environment?: Record<string, string> }> }>(
      'compose.yaml',
    );
    const fallback = String(Number(envDefault('MAX_BODY_SIZE')));
    assert.equal(compose.services.nginx?.environment?.NGINX_MAX_BODY_SIZE, `\${MAX_BODY_SIZE:-${fallback}}`);
    assert.equal(
      compose.services['colloquy-1']?.environment?.MAX_BODY_SIZE,
      `\${MAX_BODY_SIZE:-${fallback}}`,
    );
  });
});
