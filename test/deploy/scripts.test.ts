import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  assertRan,
  DEPLOY,
  eventually,
  freePort,
  makeCertificate,
  nginxArgs,
  ROOT,
  type RunResult,
  renderNginx,
  requireTool,
  run,
} from './helpers.js';

const DEPLOY_SCRIPT = path.join(DEPLOY, 'scripts', 'deploy');
const ROLLBACK_SCRIPT = path.join(DEPLOY, 'scripts', 'rollback');
const NGINX_ROUTE = path.join(DEPLOY, 'scripts', 'nginx-route');

/**
 * A stand-in for `docker compose`: records each call as `COLLOQUY_IMAGE|args` and fails the calls
 * matching STUB_FAIL (a bash regex). `migrate up` prints what the real one prints when it applied one.
 */
const STUB = `#!/usr/bin/env bash
line="\${COLLOQUY_IMAGE:-}|$*"
printf '%s\\n' "\${line//$'\\n'/ }" >> "$STUB_LOG"
if [[ -n \${STUB_FAIL:-} && $line =~ $STUB_FAIL ]]; then echo "stub: failing $*" >&2; exit 1; fi
if [[ "$*" == "run --rm --no-deps -T migrate" ]]; then echo "\${STUB_MIGRATE_OUTPUT:-applied: 0009_example}"; fi
exit 0
`;

interface Sandbox {
  dir: string;
  env: Record<string, string>;
  calls(): string[];
  state(name: string): string | undefined;
  envFile(): string;
}

function sandbox(t: TestContext, extra: Record<string, string> = {}): Sandbox {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-deploy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stub = path.join(dir, 'compose');
  writeFileSync(stub, STUB);
  chmodSync(stub, 0o755);
  writeFileSync(path.join(dir, '.env'), 'SECRET_KEY=x\nCOLLOQUY_IMAGE=colloquy:1.0.0\n', { mode: 0o600 });
  const log = path.join(dir, 'calls.log');
  writeFileSync(log, '');
  return {
    dir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      COMPOSE: stub,
      STUB_LOG: log,
      STATE_DIR: path.join(dir, 'state'),
      ENV_FILE: path.join(dir, '.env'),
      READY_INTERVAL: '0',
      READY_TIMEOUT: '0',
      TAKE_OUT_SETTLE: '0',
      ...extra,
    },
    calls: () => readFileSync(log, 'utf8').split('\n').filter(Boolean),
    state: (name) => {
      const file = path.join(dir, 'state', name);
      return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
    },
    envFile: () => readFileSync(path.join(dir, '.env'), 'utf8'),
  };
}

const deploy = (s: Sandbox, image: string, env: Record<string, string> = {}): RunResult =>
  run('bash', [DEPLOY_SCRIPT, image], { env: { ...s.env, ...env }, cwd: ROOT });

/** The calls, shortened: image|first words (readiness probes, doctor and nginx-route scripts elided). */
const summary = (calls: string[]) =>
  calls.map((c) =>
    c
      .replace(/ node -e fetch\(.*$/, ' <ready?>')
      .replace(
        / sh -c .* nginx-route (out|in) \/etc\/nginx\/colloquy\.d\/colloquy\.conf /,
        ' nginx-route $1 ',
      )
      .replace(/ migrate -e .*$/, ' migrate <doctor>')
      .replace(/--out \S+/, '--out <file>')
      .replace(/restore --yes \S+/, 'restore --yes <file>'),
  );

describe('deploy scripts (deploy/scripts)', () => {
  it('pass shellcheck (and so do .ci/install-deploy-tools and .ci/run)', (t) => {
    const shellcheck = requireTool(t, 'shellcheck');
    if (!shellcheck) return;
    const result = run(
      shellcheck,
      [
        '-x',
        '-S',
        'style',
        DEPLOY_SCRIPT,
        ROLLBACK_SCRIPT,
        NGINX_ROUTE,
        path.join(DEPLOY, 'scripts', 'lib.sh'),
        path.join(ROOT, '.ci', 'install-deploy-tools'),
        path.join(ROOT, '.ci', 'run'),
      ],
      { cwd: ROOT },
    );
    assertRan(result, 'shellcheck');
  });

  it('deploy: doctor → backup → migrate → each replica out of nginx, replaced, gated on readiness, back in → recorded', (t) => {
    const s = sandbox(t);
    const result = deploy(s, 'colloquy:1.1.0');
    assertRan(result, 'deploy');
    assert.deepEqual(summary(s.calls()), [
      'colloquy:1.1.0|run --rm --no-deps -T --entrypoint node migrate <doctor>',
      'colloquy:1.0.0|run --rm --no-deps -T migrate backup --out <file> --verify',
      'colloquy:1.1.0|run --rm --no-deps -T migrate',
      '|exec -T nginx nginx-route out colloquy-1:8000',
      'colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-1',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T nginx nginx-route in colloquy-1:8000',
      '|exec -T nginx nginx-route out colloquy-2:8000',
      'colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-2',
      '|exec -T colloquy-2 <ready?>',
      '|exec -T nginx nginx-route in colloquy-2:8000',
      '|exec -T nginx nginx-route out colloquy-3:8000',
      'colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-3',
      '|exec -T colloquy-3 <ready?>',
      '|exec -T nginx nginx-route in colloquy-3:8000',
    ]);
    assert.match(s.calls()[0]!, /doctor', '--json'/, 'the doctor gate runs `colloquy doctor --json`');
    assert.match(s.calls()[5]!, /\/health\/ready/);
    // The take-out runs the kit's nginx-route, whole, by sh inside the nginx container.
    const script = readFileSync(NGINX_ROUTE, 'utf8').trimEnd().replaceAll('\n', ' ');
    assert.ok(s.calls()[3]!.startsWith(`|exec -T nginx sh -c ${script} nginx-route out `), s.calls()[3]);
    assert.equal(s.state('current-image'), 'colloquy:1.1.0');
    assert.equal(s.state('previous-image'), 'colloquy:1.0.0');
    assert.match(s.state('last-backup') ?? '', /^\/app\/backups\/colloquy-predeploy-\d{8}T\d{6}Z\.dump$/);
    assert.match(s.envFile(), /^COLLOQUY_IMAGE=colloquy:1\.1\.0$/m, '.env pins the new image');
    assert.match(s.envFile(), /^SECRET_KEY=x$/m, 'the rest of .env is untouched');
  });

  it('deploy: a failed doctor changes nothing', (t) => {
    const s = sandbox(t, { STUB_FAIL: '--entrypoint node' });
    const result = deploy(s, 'colloquy:1.1.0');
    assert.equal(result.code, 1);
    assert.match(result.stderr, /doctor found problems/);
    assert.equal(s.calls().length, 1);
    assert.equal(s.state('current-image'), undefined);
    assert.match(s.envFile(), /COLLOQUY_IMAGE=colloquy:1\.0\.0/);
  });

  it('deploy: a failed backup stops before migrating', (t) => {
    const s = sandbox(t, { STUB_FAIL: 'backup' });
    const result = deploy(s, 'colloquy:1.1.0');
    assert.equal(result.code, 1);
    assert.ok(!s.calls().some((c) => /\|run --rm --no-deps -T migrate$/.test(c)), 'no migration');
  });

  it('deploy: a failed migration leaves the running version serving and says how to restore', (t) => {
    const s = sandbox(t, { STUB_FAIL: '\\|run --rm --no-deps -T migrate$' });
    const result = deploy(s, 'colloquy:1.1.0');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /deploy\/scripts\/rollback --restore \/app\/backups\//);
    assert.ok(!s.calls().some((c) => c.includes(' up -d ')), 'no replica was touched');
  });

  it('deploy: a replica failing its readiness gate rolls everything back, restoring the backup', (t) => {
    // colloquy-2 never becomes ready on the new image.
    const s = sandbox(t, { STUB_FAIL: '^\\|exec -T colloquy-2 ' });
    const result = deploy(s, 'colloquy:1.1.0');
    assert.equal(result.code, 4, 'the rollback also needs colloquy-2 ready, which the stub refuses');
    const s2 = sandbox(t, { STUB_FAIL: '^\\|exec -T colloquy-2 ' });
    // Fail colloquy-2 only while it runs the new image: the stub sees the last `up` image in a file.
    writeFileSync(
      s2.env.COMPOSE!,
      STUB.replace(
        'if [[ -n',
        `if [[ $* == up* ]]; then printf '%s' "\${COLLOQUY_IMAGE:-}" > "$STUB_LOG.image"; fi\nif [[ $* == "exec -T colloquy-2 "* && $(cat "$STUB_LOG.image") == colloquy:1.1.0 ]]; then exit 1; fi\nif [[ -n`,
      ),
    );
    const rolledBack = deploy(s2, 'colloquy:1.1.0', { STUB_FAIL: '' });
    assert.equal(rolledBack.code, 3, rolledBack.stderr);
    assert.match(rolledBack.stderr, /colloquy-2 failed its gate on colloquy:1\.1\.0: rolling back/);
    const calls = summary(s2.calls());
    const failedAt = calls.indexOf('|exec -T colloquy-2 <ready?>');
    // colloquy-2 was taken out, recreated and failed its gate: it stays out of nginx (no put-back) while
    // the database is restored and every replica restarts on the previous image; then all are put back.
    assert.deepEqual(calls.slice(failedAt - 2), [
      '|exec -T nginx nginx-route out colloquy-2:8000',
      'colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-2',
      '|exec -T colloquy-2 <ready?>',
      '|stop colloquy-1 colloquy-2 colloquy-3',
      'colloquy:1.0.0|run --rm --no-deps -T migrate restore --yes <file>',
      'colloquy:1.0.0|up -d --no-deps colloquy-1 colloquy-2 colloquy-3',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T colloquy-2 <ready?>',
      '|exec -T colloquy-3 <ready?>',
      '|exec -T nginx nginx-route in colloquy-1:8000 colloquy-2:8000 colloquy-3:8000',
    ]);
    const restored = s2.calls().find((c) => c.includes('restore --yes'))!;
    assert.ok(restored.endsWith(s2.state('last-backup')!), 'restores the backup this deploy took');
    assert.equal(s2.state('current-image'), 'colloquy:1.0.0');
    assert.match(s2.envFile(), /^COLLOQUY_IMAGE=colloquy:1\.0\.0$/m);
  });

  it('deploy: no migration applied → the rollback keeps the data (no restore)', (t) => {
    const s = sandbox(t, { STUB_FAIL: '^\\|exec -T colloquy-1 ', STUB_MIGRATE_OUTPUT: 'already up to date' });
    writeFileSync(
      s.env.COMPOSE!,
      STUB.replace(
        'if [[ -n',
        `if [[ $* == up* ]]; then printf '%s' "\${COLLOQUY_IMAGE:-}" > "$STUB_LOG.image"; fi\nif [[ $* == "exec -T colloquy-1 "* && $(cat "$STUB_LOG.image") == colloquy:1.1.0 ]]; then exit 1; fi\nif [[ -n`,
      ),
    );
    const result = deploy(s, 'colloquy:1.1.0', { STUB_FAIL: '' });
    assert.equal(result.code, 3);
    assert.ok(!s.calls().some((c) => c.includes('restore')), 'no restore');
    // colloquy-1 stays out of nginx from its failed gate until the rollback has it ready again.
    assert.deepEqual(summary(s.calls()).slice(3), [
      '|exec -T nginx nginx-route out colloquy-1:8000',
      'colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-1',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T nginx nginx-route out colloquy-1:8000',
      'colloquy:1.0.0|up -d --no-deps colloquy-1',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T nginx nginx-route in colloquy-1:8000',
      '|exec -T nginx nginx-route out colloquy-2:8000',
      'colloquy:1.0.0|up -d --no-deps colloquy-2',
      '|exec -T colloquy-2 <ready?>',
      '|exec -T nginx nginx-route in colloquy-2:8000',
      '|exec -T nginx nginx-route out colloquy-3:8000',
      'colloquy:1.0.0|up -d --no-deps colloquy-3',
      '|exec -T colloquy-3 <ready?>',
      '|exec -T nginx nginx-route in colloquy-3:8000',
    ]);
  });

  it('deploy: a replica nginx will not take out is still replaced, with a warning', (t) => {
    const s = sandbox(t, { STUB_FAIL: 'nginx-route out \\S+ colloquy-2:8000$' });
    const result = deploy(s, 'colloquy:1.1.0');
    assertRan(result, 'deploy');
    assert.match(result.stderr, /warning: could not take colloquy-2 out of nginx/);
    assert.ok(s.calls().includes('colloquy:1.1.0|up -d --no-deps --force-recreate colloquy-2'));
    assert.equal(s.state('current-image'), 'colloquy:1.1.0');
  });

  it('deploy: a put-back nginx refuses at first is retried once every replica runs', (t) => {
    const s = sandbox(t);
    // nginx refuses the first put-back of colloquy-1 (as it does while another replica's name does not resolve).
    writeFileSync(
      s.env.COMPOSE!,
      STUB.replace(
        'if [[ -n',
        `if [[ $* == *"nginx-route in "*" colloquy-1:8000" && ! -e "$STUB_LOG.refused" ]]; then touch "$STUB_LOG.refused"; exit 1; fi\nif [[ -n`,
      ),
    );
    const result = deploy(s, 'colloquy:1.1.0');
    assertRan(result, 'deploy');
    assert.match(result.stderr, /could not put colloquy-1 back into nginx yet/);
    assert.deepEqual(summary(s.calls()).slice(-2), [
      '|exec -T nginx nginx-route in colloquy-3:8000',
      '|exec -T nginx nginx-route in colloquy-1:8000',
    ]);
    assert.equal(s.state('current-image'), 'colloquy:1.1.0');
  });

  it('deploy: replicas nginx never takes back fail the deploy rather than leave them out', (t) => {
    const s = sandbox(t, { STUB_FAIL: 'nginx-route in ' });
    const result = deploy(s, 'colloquy:1.1.0');
    assert.equal(result.code, 4, 'the rollback cannot put them back either');
    assert.match(result.stderr, /error: nginx does not route to colloquy-1 colloquy-2 colloquy-3/);
    assert.match(result.stderr, /not every replica is back in nginx: rolling back/);
    assert.match(result.stderr, /THE ROLLBACK FAILED/);
  });

  it('DRY_RUN=1 prints the whole plan and runs nothing', (t) => {
    const s = sandbox(t);
    const result = deploy(s, 'colloquy:1.1.0', { DRY_RUN: '1' });
    assertRan(result, 'deploy (dry run)');
    assert.deepEqual(s.calls(), [], 'the compose command was never called');
    for (const step of [
      'doctor',
      'backup --out',
      'migrate',
      'colloquy-1',
      'colloquy-2',
      'colloquy-3',
      'nginx-route out',
      'sleep 0',
      'nginx-route in',
    ]) {
      assert.ok(result.stderr.includes(step), `the plan shows ${step}`);
    }
    assert.equal(s.state('current-image'), undefined);
    assert.match(s.envFile(), /COLLOQUY_IMAGE=colloquy:1\.0\.0/);
  });

  it('rollback: back to the previous image one replica at a time, optionally restoring the last backup', (t) => {
    const s = sandbox(t);
    assertRan(deploy(s, 'colloquy:1.1.0'), 'deploy');
    writeFileSync(s.env.STUB_LOG!, '');
    const result = run('bash', [ROLLBACK_SCRIPT, '--restore-last'], { env: s.env, cwd: ROOT });
    assertRan(result, 'rollback');
    assert.deepEqual(summary(s.calls()), [
      '|stop colloquy-1 colloquy-2 colloquy-3',
      'colloquy:1.0.0|run --rm --no-deps -T migrate restore --yes <file>',
      'colloquy:1.0.0|up -d --no-deps colloquy-1 colloquy-2 colloquy-3',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T colloquy-2 <ready?>',
      '|exec -T colloquy-3 <ready?>',
      '|exec -T nginx nginx-route in colloquy-1:8000 colloquy-2:8000 colloquy-3:8000',
    ]);
    assert.equal(s.state('current-image'), 'colloquy:1.0.0');
    assert.equal(s.state('previous-image'), 'colloquy:1.1.0', 'a second rollback undoes the first');
    assert.match(s.envFile(), /^COLLOQUY_IMAGE=colloquy:1\.0\.0$/m);

    writeFileSync(s.env.STUB_LOG!, '');
    assertRan(
      run('bash', [ROLLBACK_SCRIPT, '--image', 'colloquy:0.9.0'], { env: s.env, cwd: ROOT }),
      'rollback --image',
    );
    assert.ok(!s.calls().some((c) => c.includes('restore')), 'no restore without --restore');
    assert.deepEqual(summary(s.calls()).slice(0, 4), [
      '|exec -T nginx nginx-route out colloquy-1:8000',
      'colloquy:0.9.0|up -d --no-deps colloquy-1',
      '|exec -T colloquy-1 <ready?>',
      '|exec -T nginx nginx-route in colloquy-1:8000',
    ]);
    assert.equal(s.calls().filter((c) => c.startsWith('colloquy:0.9.0|up -d')).length, 3);
  });

  it('refuses bad usage', (t) => {
    const s = sandbox(t);
    assert.equal(run('bash', [DEPLOY_SCRIPT], { env: s.env }).code, 64);
    assert.equal(run('bash', [ROLLBACK_SCRIPT, '--bogus'], { env: s.env }).code, 64);
    const noPrevious = run('bash', [ROLLBACK_SCRIPT], { env: s.env });
    assert.equal(noPrevious.code, 1);
    assert.match(noPrevious.stderr, /no previous image recorded/);
    assert.equal(deploy(s, 'x', { RESTORE_ON_ROLLBACK: 'sometimes' }).code, 1);
  });
});

describe('nginx-route (deploy/scripts/nginx-route) on the shipped nginx configuration', () => {
  it('takes a replica out of the upstream and puts it back, refusing to leave no replica routed', async (t) => {
    const nginx = requireTool(t, 'nginx');
    if (!nginx) return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-nginx-route-'));
    let stopNginx = () => {};
    t.after(() => {
      stopNginx();
      rmSync(dir, { recursive: true, force: true });
    });
    const tls = makeCertificate(t, dir);
    if (!tls) return;
    // Two stand-in replicas, each answering its own name.
    const replicas = await Promise.all(
      ['replica-a', 'replica-b'].map(async (name) => {
        const server = http.createServer((_req, res) => res.end(name));
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
        t.after(() => server.close());
        return `127.0.0.1:${(server.address() as AddressInfo).port}`;
      }),
    );
    const [a, b] = replicas as [string, string];
    const httpPort = await freePort();
    const render = renderNginx({ dir, upstreams: replicas, httpPort, httpsPort: await freePort(), ...tls });
    assertRan(run(nginx, nginxArgs(render)), 'nginx');
    stopNginx = () => assertRan(run(nginx, [...nginxArgs(render), '-s', 'stop']), 'nginx -s stop');
    const conf = path.join(dir, 'colloquy.d', 'colloquy.conf');
    const route = (state: string, ...addresses: string[]) =>
      run('sh', [NGINX_ROUTE, state, conf, ...addresses, '--', ...nginxArgs(render)]);
    /** Who answers /health through nginx (its plain-HTTP server proxies it to the upstream). */
    const answering = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`http://127.0.0.1:${httpPort}/health`, { headers: { connection: 'close' } });
        seen.add(await res.text());
      }
      return [...seen].sort().join(' ');
    };
    await eventually(async () => (await answering()) === 'replica-a replica-b', 'both replicas answer');

    assertRan(route('out', a), 'nginx-route out');
    assert.match(readFileSync(conf, 'utf8'), new RegExp(`server ${a} max_fails=2 fail_timeout=10s down;`));
    await eventually(async () => (await answering()) === 'replica-b', 'only replica-b answers');
    assert.equal(await answering(), 'replica-b', 'replica-a gets nothing once out');

    const before = readFileSync(conf, 'utf8');
    const last = route('out', b);
    assert.equal(last.code, 1);
    assert.match(last.stderr, /would leave no server routed/);
    const unknown = route('out', '127.0.0.1:1');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no 'server 127\.0\.0\.1:1' line/);
    assert.equal(readFileSync(conf, 'utf8'), before, 'a refused change leaves the file as it was');
    assert.equal(await answering(), 'replica-b');

    assertRan(route('in', a), 'nginx-route in');
    assert.doesNotMatch(readFileSync(conf, 'utf8'), / down;/);
    await eventually(async () => (await answering()) === 'replica-a replica-b', 'both answer again');
  });
});
