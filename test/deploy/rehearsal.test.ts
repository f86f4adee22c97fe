import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { type FakeUpstream, startFakeUpstream } from '../fake-upstream/server.js';
import { createTestDatabase, markSuiteRan, type TestDatabase } from '../helpers/databases.js';
import {
  CI,
  eventually,
  filesUnder,
  freePort,
  makeCertificate,
  nginxArgs,
  ROOT,
  read,
  renderNginx,
  renderPrometheus,
  runAsync,
  which,
} from './helpers.js';

/**
 * Production rehearsal: the kit's nginx, Prometheus rules and Alertmanager routing, run for real in front
 * of three `node dist/main.js serve` replicas on PostgreSQL and Redis, with an OpenAI-compatible fake
 * upstream. Proves failover, unbuffered streaming, readiness, metrics, alerting end to end.
 */
const TOOLS = ['nginx', 'prometheus', 'prometheus-alertmanager', 'openssl'];
const missingServices = ['TEST_DATABASE_URL', 'TEST_REDIS_URL'].filter((v) => !process.env[v]);
const missingTools = TOOLS.filter((tool) => !which(tool));
// Without the databases the rehearsal is skipped (CI sets them; scripts/run-tests.mjs fails CI without
// them). Without the tools it is skipped outside CI only: in CI the `before` hook fails on them.
const skip = missingServices.length
  ? `set ${missingServices.join(' and ')} to run the production rehearsal`
  : missingTools.length && !CI
    ? `${missingTools.join(', ')} not installed (run .ci/install-deploy-tools)`
    : false;
if (skip) console.log(`# skipping the production rehearsal: ${skip}`);

const MAIN = path.join(ROOT, 'dist', 'main.js');
const UPSTREAM_KEY = 'sk-rehearsal-upstream-key';
const SECRET_KEY = randomBytes(36).toString('base64url');
const ADMIN_KEY = randomBytes(36).toString('base64url');
const METRICS_TOKEN = randomBytes(24).toString('hex');

/** The parts of Prometheus' API answers the rehearsal reads. */
interface PromData {
  result: { metric: Record<string, string>; value: [number, string] }[];
  activeTargets: { health: string; labels: Record<string, string> }[];
  alerts: { labels: Record<string, string>; state: string }[];
}

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

const tail = (file: string, lines = 30) =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';

/** dist/ older than any file in src/ (or missing): rebuild, as `npm test`'s pretest does. */
async function ensureBuilt() {
  const newestSource = Math.max(
    ...filesUnder(path.join(ROOT, 'src'), /\.ts$/).map((f) => statSync(f).mtimeMs),
    statSync(path.join(ROOT, 'package.json')).mtimeMs,
  );
  if (existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestSource) return;
  console.log('# rehearsal: dist/ is stale, running npm run build');
  const result = await runAsync('npm', ['run', '--silent', 'build'], { cwd: ROOT, env: process.env });
  assert.equal(result.code, 0, `npm run build failed:\n${result.stdout}\n${result.stderr}`);
}

describe('production rehearsal: 3 replicas behind the kit’s nginx, watched by its Prometheus rules', {
  skip,
  timeout: 170_000,
}, () => {
  const procs: Proc[] = [];
  let dir: string;
  let db: TestDatabase;
  let fake: FakeUpstream;
  let webhook: http.Server;
  const notifications: { receiver: string; alerts: { labels: Record<string, string>; status: string }[] }[] =
    [];
  let agent: Agent;
  let edge: string; // https://127.0.0.1:PORT
  let edgePort: number;
  let promUrl: string;
  const replicas: { port: number; track: string; proc?: Proc }[] = [];
  let baseEnv: Record<string, string>;
  let apiKey: string;

  function start(name: string, command: string, args: string[], env: Record<string, string>): Proc {
    const log = path.join(dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(command, args, { cwd: dir, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const proc = { name, child, log, exited };
    procs.push(proc);
    return proc;
  }

  async function stop(proc: Proc, signal: NodeJS.Signals = 'SIGTERM') {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.exited;
    proc.child.kill(signal);
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    const code = await proc.exited;
    clearTimeout(timer);
    return code;
  }

  const cli = async (args: string[], input = '') => {
    const result = await runAsync(process.execPath, [MAIN, ...args], { cwd: dir, env: baseEnv, input });
    assert.equal(result.code, 0, `colloquy ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };

  const get = (url: string, headers: Record<string, string> = {}) =>
    request(url, { method: 'GET', headers, dispatcher: agent });
  const chat = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    request(`${edge}/v1/chat/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hello' }],
        ...body,
      }),
    });
  /** Prometheus' HTTP API: the `data` of a successful answer. */
  const prom = async <T = PromData>(endpoint: string): Promise<T> => {
    const res = await fetch(`${promUrl}${endpoint}`);
    const json = (await res.json()) as { status: string; data: T };
    assert.equal(json.status, 'success', JSON.stringify(json));
    return json.data;
  };

  before(async () => {
    assert.deepEqual(
      missingTools,
      [],
      'the rehearsal needs these tools (run .ci/install-deploy-tools): required when CI=true',
    );
    markSuiteRan('redis');
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-rehearsal-'));
    await ensureBuilt();
    db = await createTestDatabase('postgres');
    fake = await startFakeUpstream({
      apiKey: UPSTREAM_KEY,
      reply: 'one two three four five six seven eight',
      models: ['gpt-4o-mini'],
    });
    baseEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      COLLOQUY_ENV: 'production',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      DATABASE_URL: db.url,
      REDIS_URL: process.env.TEST_REDIS_URL!,
      SECRET_KEY,
      COLLOQUY_ADMIN_KEY: ADMIN_KEY,
      METRICS_TOKEN,
      OPENAI_BASE_URL: fake.baseUrl,
      OPENAI_API_KEY: UPSTREAM_KEY,
      HTTPS_ONLY: 'true',
      TRUST_PROXY: '127.0.0.1',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      SHUTDOWN_TIMEOUT: '5',
      // As compose.yaml sets it: nginx retires its pooled connections before the listener closes.
      SHUTDOWN_DELAY: '2',
      // The rehearsal is about the deployment, not Colloquy's own per-key limits or load shedding (on a
      // busy CI machine running Prometheus, nginx and three replicas the event loop can lag past 1 s).
      RATE_LIMIT_ENABLED: 'false',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '10000',
    };

    // The deploy script's doctor gate, run against the real `colloquy doctor --json`: pending migrations
    // are expected before `migrate up` and must not block.
    const gate = read('deploy/scripts/lib.sh').match(/<<'JS' \|\| true\n([\s\S]*?)\nJS\n/)?.[1];
    assert.ok(gate, 'DOCTOR_GATE_JS in deploy/scripts/lib.sh');
    const runGate = (env: Record<string, string>) =>
      runAsync(process.execPath, ['-e', gate.replace('/app/dist/main.js', MAIN)], { cwd: dir, env });
    const before = await runGate(baseEnv);
    assert.equal(before.code, 0, `doctor gate before migrate:\n${before.stdout}${before.stderr}`);
    assert.match(before.stdout, /database\.pending_migrations: .*\(applied by the migrate step\)/);
    const redisDown = await runGate({ ...baseEnv, REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    assert.equal(redisDown.code, 1, 'the gate refuses an unreachable Redis');
    assert.match(redisDown.stdout, /ERROR redis\.unreachable/);

    assert.match(await cli(['migrate', 'up']), /^applied: /m);
    await cli(
      ['users', 'create', '--email', 'rehearsal@example.com', '--password-stdin', '--json'],
      'Rehearsal-Pa55word-1234!\n',
    );
    apiKey = (
      JSON.parse(
        await cli(['keys', 'create', '--user', 'rehearsal@example.com', '--name', 'rehearsal', '--json']),
      ) as { key: string }
    ).key;

    for (let i = 0; i < 3; i++)
      replicas.push({ port: await freePort(), track: i === 2 ? 'canary' : 'stable' });
    replicas.forEach((r, i) => {
      r.proc = start(`colloquy-${i + 1}`, process.execPath, [MAIN, 'serve'], {
        ...baseEnv,
        PORT: String(r.port),
        COLLOQUY_TRACK: r.track,
      });
    });
    for (const r of replicas) {
      await eventually(
        async () => (await fetch(`http://127.0.0.1:${r.port}/health/ready`)).status === 200,
        `${r.proc!.name} ready\n${tail(r.proc!.log)}`,
        30_000,
      );
    }

    // Alertmanager, its receivers pointed at a local webhook that records what it is told.
    webhook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        notifications.push(JSON.parse(body));
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}`;
    const am = parseYaml(read('deploy/alertmanager/alertmanager.yml')) as {
      route: { group_wait: string; routes: { group_wait?: string }[] };
      receivers: { name: string; webhook_configs: { url: string }[] }[];
    };
    am.route.group_wait = '0s';
    for (const r of am.route.routes) r.group_wait = '0s';
    for (const receiver of am.receivers) receiver.webhook_configs[0]!.url = `${hook}/${receiver.name}`;
    mkdirSync(path.join(dir, 'alertmanager'));
    writeFileSync(path.join(dir, 'alertmanager', 'alertmanager.yml'), toYaml(am));
    const amPort = await freePort();
    start(
      'alertmanager',
      which('prometheus-alertmanager')!,
      [
        `--config.file=${path.join(dir, 'alertmanager', 'alertmanager.yml')}`,
        `--storage.path=${path.join(dir, 'alertmanager')}`,
        `--web.listen-address=127.0.0.1:${amPort}`,
        '--cluster.listen-address=',
      ],
      { PATH: baseEnv.PATH! },
    );

    // Prometheus with the kit's configuration and rules: 1 s scrapes and evaluations, `for:` shortened.
    const promDir = path.join(dir, 'prometheus');
    const tokenFile = path.join(dir, 'metrics_token');
    writeFileSync(tokenFile, METRICS_TOKEN);
    const promConfig = renderPrometheus({
      dir: promDir,
      targets: replicas.map((r) => `127.0.0.1:${r.port}`),
      tokenFile,
      alertmanager: `127.0.0.1:${amPort}`,
      interval: '1s',
      alertFor: '2s',
    });
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    start(
      'prometheus',
      which('prometheus')!,
      [
        `--config.file=${promConfig}`,
        `--storage.tsdb.path=${path.join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { PATH: baseEnv.PATH! },
    );

    // nginx with the kit's configuration, TLS with an openssl test certificate.
    const certificate = makeCertificate(undefined, dir)!;
    agent = new Agent({ connect: { ca: readFileSync(certificate.cert) }, keepAliveTimeout: 10_000 });
    edgePort = await freePort();
    const render = renderNginx({
      dir: path.join(dir, 'nginx'),
      upstreams: replicas.map((r) => `127.0.0.1:${r.port}`),
      httpPort: await freePort(),
      httpsPort: edgePort,
      ...certificate,
    });
    edge = `https://127.0.0.1:${edgePort}`;
    start('nginx', which('nginx')!, nginxArgs(render, [' daemon off;']), { PATH: baseEnv.PATH! });
    await eventually(
      async () => (await get(`${edge}/health/live`)).statusCode === 200,
      `nginx serving\n${tail(path.join(render.dir, 'error.log'))}`,
      15_000,
    );
    await eventually(
      async () => (await fetch(`${promUrl}/-/ready`)).ok,
      `prometheus ready\n${tail(path.join(dir, 'prometheus.log'))}`,
    );
  });

  after(async () => {
    for (const p of [...procs].reverse()) await stop(p);
    await fake?.close();
    await new Promise<void>((resolve) => (webhook ? webhook.close(() => resolve()) : resolve()));
    await agent?.close();
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the API through nginx over TLS, with the security headers and one request id', async () => {
    const ready = await get(`${edge}/health/ready`);
    assert.equal(ready.statusCode, 200);
    assert.equal(((await ready.body.json()) as { status: string }).status, 'ready');

    const mine = 'rehearsal-request-0001';
    const res = await chat({ stream: false }, { 'x-request-id': mine });
    const body = (await res.body.json()) as { choices: { message: { content: string } }[] };
    assert.equal(res.statusCode, 200, JSON.stringify(body));
    assert.equal(body.choices[0]!.message.content, 'one two three four five six seven eight');
    assert.equal(res.headers['x-request-id'], mine, 'the client’s id is kept end to end');
    // The edge's security headers, each exactly once (the replica sets them too).
    assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
    assert.equal(res.headers['x-content-type-options'], 'nosniff');
    assert.equal(res.headers['x-frame-options'], 'DENY');
    assert.equal(res.headers['referrer-policy'], 'no-referrer');
    assert.equal(fake.requests.at(-1)?.headers['x-request-id'] ?? mine, mine);

    const anonymous = await chat({ stream: false });
    await anonymous.body.dump();
    assert.match(
      String(anonymous.headers['x-request-id']),
      /^[0-9a-f]{32}$/,
      'nginx’s $request_id when absent',
    );

    // gzip for JSON, and /metrics stays private.
    const openapi = await get(`${edge}/openapi.json`, { 'accept-encoding': 'gzip' });
    await openapi.body.dump();
    assert.equal(openapi.statusCode, 200);
    assert.equal(openapi.headers['content-encoding'], 'gzip');
    const metrics = await get(`${edge}/metrics`);
    await metrics.body.dump();
    assert.equal(metrics.statusCode, 404);

    // The access log has the API call with its request id, and no health checks.
    const access = await eventually(async () => {
      const text = readFileSync(path.join(dir, 'nginx', 'access.log'), 'utf8');
      return text.includes(mine) && text;
    }, 'the access log line');
    assert.ok(!/"uri":"\/health/.test(access), 'health checks are not logged');
    const line = JSON.parse(access.split('\n').find((l) => l.includes(mine))!) as Record<string, unknown>;
    assert.equal(line.status, 200);
    assert.match(String(line.upstream_addr), /^127\.0\.0\.1:\d+$/);
  });

  it('streams server-sent events through nginx unbuffered (and uncompressed)', async () => {
    fake.set({ chunkIntervalMs: 200 });
    try {
      const started = Date.now();
      const res = await chat({ stream: true }, { 'accept-encoding': 'gzip' });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      assert.equal(res.headers['content-encoding'], undefined, 'SSE is never gzipped');
      const arrivals: number[] = [];
      let text = '';
      for await (const chunk of res.body) {
        const piece = chunk.toString();
        text += piece;
        for (const _ of piece.matchAll(/^data: \{/gm)) arrivals.push(Date.now() - started);
      }
      assert.match(text, /data: \[DONE\]/);
      const words = [...text.matchAll(/"content":"([^"]+)"/g)].map((m) => m[1]!.trim()).join(' ');
      assert.equal(words, 'one two three four five six seven eight');
      // 8 words, 200 ms apart upstream: buffered, they would all arrive together at the end.
      assert.ok(arrivals.length >= 8, `events: ${arrivals.join(', ')}`);
      const spread = arrivals.at(-1)! - arrivals[0]!;
      assert.ok(
        spread >= 1000,
        `events arrived over ${spread} ms (${arrivals.join(', ')}), not in one burst`,
      );
    } finally {
      fake.set({ chunkIntervalMs: 0 });
    }
  });

  it('upgrades WebSockets on /api/conversations/:id/ws through nginx', async () => {
    const created = await request(`${edge}/api/conversations`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'rehearsal' }),
    });
    const conversation = (await created.body.json()) as { id: string };
    assert.equal(created.statusCode, 201, JSON.stringify(conversation));

    const socket = tls.connect({
      host: '127.0.0.1',
      port: edgePort,
      ca: readFileSync(path.join(dir, 'tls.crt')),
    });
    await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    socket.write(
      [
        `GET /api/conversations/${conversation.id}/ws?token=${encodeURIComponent(apiKey)} HTTP/1.1`,
        `Host: 127.0.0.1:${edgePort}`,
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        '',
        '',
      ].join('\r\n'),
    );
    // A masked text frame: {"type":"ping"}
    const payload = Buffer.from('{"type":"ping"}');
    const mask = randomBytes(4);
    const frame = Buffer.concat([
      Buffer.from([0x81, 0x80 | payload.length]),
      mask,
      Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!)),
    ]);
    let received = Buffer.alloc(0);
    let sent = false;
    const pong = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no pong; got: ${received.toString()}`)), 5000);
      socket.on('data', (data) => {
        received = Buffer.concat([received, data]);
        const head = received.indexOf('\r\n\r\n');
        if (head < 0) return;
        const status = received.subarray(0, received.indexOf('\r\n')).toString();
        if (!/^HTTP\/1\.1 101 /.test(status)) return reject(new Error(`no upgrade: ${received.toString()}`));
        if (!sent) {
          sent = true;
          socket.write(frame);
        }
        const rest = received.subarray(head + 4);
        if (rest.length >= 2 && rest.length >= 2 + (rest[1]! & 0x7f)) {
          clearTimeout(timer);
          resolve(rest.subarray(2, 2 + (rest[1]! & 0x7f)).toString());
        }
      });
    });
    socket.destroy();
    assert.deepEqual(JSON.parse(pong), { type: 'pong' });
  });

  it('Prometheus scrapes every replica with METRICS_TOKEN, `track` included, and the recording rules evaluate', async () => {
    const targets = await eventually(
      async () => {
        const data = await prom('/api/v1/targets');
        const active = data.activeTargets as { health: string; labels: { instance: string } }[];
        return active.length === 3 && active.every((t) => t.health === 'up') && active;
      },
      `3 healthy targets\n${tail(path.join(dir, 'prometheus.log'))}`,
      30_000,
    );
    assert.deepEqual(
      targets.map((t) => t.labels.instance).sort(),
      replicas.map((r) => `127.0.0.1:${r.port}`).sort(),
    );
    const info = await prom('/api/v1/query?query=colloquy_build_info');
    const tracks = info.result.map((r) => `${r.metric.instance}=${r.metric.track}`).sort();
    assert.deepEqual(tracks, replicas.map((r) => `127.0.0.1:${r.port}=${r.track}`).sort());
    await eventually(async () => {
      const data = await prom(
        `/api/v1/query?query=${encodeURIComponent('track:colloquy_http_requests:rate5m')}`,
      );
      return (data.result as unknown[]).length > 0;
    }, 'track:colloquy_http_requests:rate5m has a value');
  });

  it('fails over with no client error when a replica is stopped (SIGTERM) mid-traffic', async () => {
    const victim = replicas[0]!;
    const errors: string[] = [];
    let ok = 0;
    let okAfterStop = 0;
    let stopped = false;
    let running = true;
    const worker = async () => {
      while (running) {
        try {
          const res = await chat({ stream: false });
          const text = await res.body.text();
          if (res.statusCode === 200) {
            ok++;
            if (stopped) okAfterStop++;
          } else errors.push(`${res.statusCode} ${text}`);
        } catch (err) {
          errors.push(String(err));
        }
        // 4 workers × ≤ 10 requests/s: under the edge's per-address limit (50 r/s), which is not on trial here.
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    await new Promise((r) => setTimeout(r, 1500));
    const code = await stop(victim.proc!, 'SIGTERM');
    stopped = true;
    assert.equal(code, 0, `the replica drained and exited 0\n${tail(victim.proc!.log)}`);
    await new Promise((r) => setTimeout(r, 2500));
    running = false;
    await Promise.all(workers);
    assert.equal(
      errors.length,
      0,
      `${errors.length} client errors out of ${ok + errors.length} requests, e.g.\n${[...new Set(errors)].slice(0, 5).join('\n')}`,
    );
    assert.ok(ok > 20, `${ok} requests served`);
    assert.ok(okAfterStop > 10, `${okAfterStop} requests served after the stop`);
    // nginx did meet the stopped replica (and moved the requests on: the client saw no error).
    const nginxErrors = readFileSync(path.join(dir, 'nginx', 'error.log'), 'utf8');
    assert.match(
      nginxErrors,
      new RegExp(`\\[error\\].*upstream: "http://127\\.0\\.0\\.1:${victim.port}/`),
      'nginx retried away from the stopped replica',
    );
  });

  it('still answers readiness through nginx with one replica down', async () => {
    for (let i = 0; i < 10; i++) {
      const res = await get(`${edge}/health/ready`);
      const body = (await res.body.json()) as { status: string };
      assert.equal(res.statusCode, 200);
      assert.equal(body.status, 'ready');
    }
  });

  it('Prometheus sees the stopped replica down and fires ColloquyInstanceDown; Alertmanager files a ticket', async () => {
    const victim = `127.0.0.1:${replicas[0]!.port}`;
    const up = await eventually(
      async () => {
        const data = await prom(`/api/v1/query?query=${encodeURIComponent('up{job="colloquy"}')}`);
        const values = Object.fromEntries(
          (data.result as { metric: { instance: string }; value: [number, string] }[]).map((r) => [
            r.metric.instance,
            r.value[1],
          ]),
        );
        return values[victim] === '0' && values;
      },
      'up == 0 for the stopped replica',
      20_000,
    );
    for (const r of replicas.slice(1)) assert.equal(up[`127.0.0.1:${r.port}`], '1');

    const alert = await eventually(
      async () => {
        const data = await prom('/api/v1/alerts');
        return (data.alerts as { labels: Record<string, string>; state: string }[]).find(
          (a) =>
            a.labels.alertname === 'ColloquyInstanceDown' &&
            a.labels.instance === victim &&
            a.state === 'firing',
        );
      },
      'ColloquyInstanceDown firing',
      30_000,
    );
    assert.equal(alert.labels.severity, 'P2');
    assert.ok(
      !(await prom('/api/v1/alerts')).alerts.some(
        (a: { labels: Record<string, string> }) => a.labels.alertname === 'ColloquyAllInstancesDown',
      ),
      'two replicas still serve: no outage alert',
    );

    const notified = await eventually(
      async () =>
        notifications.find((n) =>
          n.alerts.some((a) => a.labels.alertname === 'ColloquyInstanceDown' && a.status === 'firing'),
        ),
      `Alertmanager notifies a receiver\n${tail(path.join(dir, 'alertmanager.log'))}`,
      30_000,
    );
    assert.equal(notified.receiver, 'ticket', 'P2 goes to the ticket receiver, not the pager');
  });

  it('the Dockerfile and compose healthchecks pass on a live replica and fail on the stopped one', async () => {
    const liveness = JSON.parse(/HEALTHCHECK [\s\S]*?CMD (\[.*\])/.exec(read('Dockerfile'))![1]!) as string[];
    const compose = parseYaml(read('compose.yaml'), { merge: true }) as {
      services: Record<string, { healthcheck: { test: string[] } }>;
    };
    const readiness = compose.services['colloquy-1']!.healthcheck.test.slice(1);
    const live = replicas[1]!.port;
    const dead = replicas[0]!.port;
    const probe = (argv: string[], port: number) =>
      runAsync(
        argv[0]!,
        argv.slice(1).map((a) => a.replace('127.0.0.1:8000', `127.0.0.1:${port}`)),
        {
          env: { PATH: process.env.PATH, PORT: String(port) },
        },
      );
    assert.equal((await probe(liveness, live)).code, 0);
    assert.equal((await probe(readiness, live)).code, 0);
    assert.equal((await probe(liveness, dead)).code, 1);
    assert.equal((await probe(readiness, dead)).code, 1);
  });
});
