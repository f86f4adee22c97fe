import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
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
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { type FakeUpstream, type FakeUpstreamOptions, startFakeUpstream } from '../fake-upstream/server.js';
import {
  createTestDatabase,
  markSuiteRan,
  type TestDatabase,
  type TestDialect,
} from '../helpers/databases.js';
import {
  CI,
  DEPLOY,
  eventually,
  filesUnder,
  freePort,
  makeCertificate,
  type NginxRender,
  nginxArgs,
  ROOT,
  read,
  renderNginx,
  renderPrometheus,
  runAsync,
  which,
} from './helpers.js';

/**
 * The production rehearsal's stack, shared by its suites: `node dist/main.js serve` replicas on
 * PostgreSQL and Redis behind the kit's nginx (TLS, ports adapted), scraped by Prometheus with the kit's
 * configuration and rules (1 s scrapes), optionally Alertmanager with its receivers pointed at a local
 * webhook, and an OpenAI-compatible fake upstream.
 */
const TOOLS = ['nginx', 'prometheus', 'prometheus-alertmanager', 'openssl'];
const missingServices = ['TEST_DATABASE_URL', 'TEST_REDIS_URL'].filter((v) => !process.env[v]);
export const missingTools = TOOLS.filter((tool) => !which(tool));
/**
 * Why the rehearsal is skipped, or false. Without the databases it is skipped (CI sets them;
 * scripts/run-tests.mjs fails CI without them). Without the tools it is skipped outside CI only: in CI
 * startRehearsalStack fails on them.
 */
export const rehearsalSkip: string | false = missingServices.length
  ? `set ${missingServices.join(' and ')} to run the production rehearsal`
  : missingTools.length && !CI
    ? `${missingTools.join(', ')} not installed (run .ci/install-deploy-tools)`
    : false;
if (rehearsalSkip) console.log(`# skipping the production rehearsal: ${rehearsalSkip}`);
/** Why the rehearsal on MariaDB / MySQL is skipped (it also needs TEST_MYSQL_URL), or false. */
export const mysqlRehearsalSkip: string | false =
  rehearsalSkip ||
  (!process.env.TEST_MYSQL_URL && 'set TEST_MYSQL_URL to run the production rehearsal on MariaDB');

export const MAIN = path.join(ROOT, 'dist', 'main.js');
/** What deploy/scripts/lib.sh runs in the nginx container to take a replica out of the upstream and back. */
const NGINX_ROUTE = path.join(DEPLOY, 'scripts', 'nginx-route');
export const UPSTREAM_KEY = 'sk-rehearsal-upstream-key';
export const UPSTREAM_REPLY = 'one two three four five six seven eight';
/** The namespace label every target gets, as the ServiceMonitor's pods in the Rollout's namespace would. */
export const NAMESPACE = 'colloquy';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

export interface Replica {
  name: string;
  port: number;
  track: 'stable' | 'canary';
  /** Variables on top of the stack's base environment (e.g. another OPENAI_BASE_URL). */
  env: Record<string, string>;
  proc?: Proc;
}

/** The parts of Prometheus' API answers the rehearsal reads. */
export interface PromData {
  result: { metric: Record<string, string>; value: [number, string] }[];
  activeTargets: { health: string; labels: Record<string, string> }[];
  alerts: { labels: Record<string, string>; state: string }[];
}

/** What a client saw of one conversation turn. */
export interface TurnResult {
  requestId: string;
  status: number;
  /** Event types in order. */
  events: string[];
  text: string;
  userMessageId?: string;
  assistantMessageId?: string;
  /** The answering worker's pid (X-Colloquy-Worker) when the replica runs WORKERS > 1 and headers arrived. */
  worker?: string;
  /** Set when the client saw anything but a 200 stream ending with `done`. */
  failure?: string;
}

/** Adds one server-sent event (`event: TYPE` / `data: JSON`) to what the client saw of a turn. */
function readEvent(turn: TurnResult, block: string) {
  const type = /^event: (\w+)$/m.exec(block)?.[1];
  const data = /^data: (.*)$/m.exec(block)?.[1];
  if (!type || !data) return;
  const payload = JSON.parse(data) as Record<string, unknown>;
  turn.events.push(type);
  if (type === 'message') turn.userMessageId = (payload.message as { id: string }).id;
  if (type === 'start') turn.assistantMessageId = String(payload.message_id);
  if (type === 'delta') turn.text += String(payload.content);
}

export interface Notification {
  receiver: string;
  alerts: { labels: Record<string, string>; status: string }[];
}

export const tail = (file: string, lines = 30) =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n') : '(no log)';

const BUILD_LOCK = path.join(os.tmpdir(), 'colloquy-rehearsal-build.lock');

/** dist/ at least as new as every file in src/ and package.json. */
function builtIsFresh() {
  const newestSource = Math.max(
    ...filesUnder(path.join(ROOT, 'src'), /\.ts$/).map((f) => statSync(f).mtimeMs),
    statSync(path.join(ROOT, 'package.json')).mtimeMs,
  );
  return existsSync(MAIN) && statSync(MAIN).mtimeMs >= newestSource;
}

/**
 * dist/ stale (or missing): rebuild, as `npm test`'s pretest does. The rehearsal suites run in parallel:
 * one builds at a time (a lock directory) so no replica starts on a half-written dist/.
 */
async function ensureBuilt() {
  if (builtIsFresh()) return;
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(BUILD_LOCK);
      break;
    } catch {
      // A lock left by a killed run is stale after the longest build.
      const held = statSync(BUILD_LOCK, { throwIfNoEntry: false });
      if (held && Date.now() - held.mtimeMs > 180_000) rmSync(BUILD_LOCK, { force: true, recursive: true });
      assert.ok(Date.now() < deadline, `waited 3 min for another rehearsal's build (${BUILD_LOCK})`);
      await sleep(500);
    }
  }
  try {
    if (builtIsFresh()) return;
    console.log('# rehearsal: dist/ is stale, running npm run build');
    const result = await runAsync('npm', ['run', '--silent', 'build'], { cwd: ROOT, env: process.env });
    assert.equal(result.code, 0, `npm run build failed:\n${result.stdout}\n${result.stderr}`);
  } finally {
    rmSync(BUILD_LOCK, { force: true, recursive: true });
  }
}

export interface StackOptions {
  tracks: ('stable' | 'canary')[];
  /** The database every replica uses: a fresh one on TEST_DATABASE_URL (default) or TEST_MYSQL_URL. */
  dialect?: Exclude<TestDialect, 'sqlite'>;
  /** WORKERS for every replica: a supervisor forking that many workers on the replica's port. */
  workers?: number;
  /** Variables for every replica and CLI call, over the stack's production defaults. */
  env?: Record<string, string>;
  upstream?: FakeUpstreamOptions;
  /** Start Alertmanager, its receivers pointed at a webhook that records `notifications`. */
  alertmanager?: boolean;
  /** Runs before `colloquy migrate up` (the deploy script's doctor gate is checked there). */
  beforeMigrate?: (stack: RehearsalStack) => Promise<void>;
}

export class RehearsalStack {
  readonly procs: Proc[] = [];
  readonly replicas: Replica[] = [];
  readonly notifications: Notification[] = [];
  readonly secretKey = randomBytes(36).toString('base64url');
  readonly adminKey = randomBytes(36).toString('base64url');
  readonly metricsToken = randomBytes(24).toString('hex');
  dir = '';
  db!: TestDatabase;
  fake!: FakeUpstream;
  agent!: Agent;
  /** https://127.0.0.1:PORT, nginx's TLS server. */
  edge = '';
  edgePort = 0;
  promUrl = '';
  baseEnv: Record<string, string> = {};
  /** A user's API key (rate limited like any user's; the admin key is not). */
  apiKey = '';
  nginx?: Proc;
  prometheus?: Proc;
  #webhook?: http.Server;
  #httpPort = 0;
  #nginxRender?: NginxRender;
  #certificate?: { cert: string; key: string };
  #promConfig = { tokenFile: '', alertmanager: undefined as string | undefined };
  #workers: number | undefined;

  get nginxDir() {
    return path.join(this.dir, 'nginx');
  }

  start(name: string, command: string, args: string[], env: Record<string, string>): Proc {
    const log = path.join(this.dir, `${name}.log`);
    const fd = openSync(log, 'a');
    const child = spawn(command, args, { cwd: this.dir, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const proc = { name, child, log, exited };
    this.procs.push(proc);
    return proc;
  }

  /** Signals a process and waits for it to exit (SIGKILL after 15 s); its exit code. */
  async stop(proc: Proc, signal: NodeJS.Signals = 'SIGTERM') {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.exited;
    proc.child.kill(signal);
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
    const code = await proc.exited;
    clearTimeout(timer);
    return code;
  }

  #spawnReplica(replica: Replica) {
    replica.proc = this.start(replica.name, process.execPath, [MAIN, 'serve'], {
      ...this.baseEnv,
      PORT: String(replica.port),
      COLLOQUY_TRACK: replica.track,
      ...(this.#workers ? { WORKERS: String(this.#workers) } : {}),
      ...replica.env,
    });
  }

  /** Starts (or restarts) a replica on its port and waits until it answers ready. */
  async startReplica(replica: Replica) {
    this.#spawnReplica(replica);
    await this.waitReady(replica);
  }

  async waitReady(replica: Replica) {
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${replica.port}/health/ready`)).status === 200,
      `${replica.name} ready\n${tail(replica.proc?.log ?? '')}`,
      30_000,
    );
  }

  /**
   * The pids of a replica's worker processes (WORKERS > 1): the children of its supervisor, the process
   * the stack started. `ps`, as /proc/PID/task/TID/children is absent from some kernels.
   */
  workerPids(replica: Replica): number[] {
    const pid = replica.proc?.child.pid;
    if (!pid) return [];
    try {
      return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
        .split('\n')
        .map((line) => Number(line.trim()))
        .filter((n) => n > 0);
    } catch {
      // ps exits 1 when the process has no children.
      return [];
    }
  }

  /** A replica not started yet, nor routed to or scraped until `reconfigure()`. */
  async addReplica(track: Replica['track'], env: Record<string, string> = {}) {
    const replica: Replica = {
      name: `colloquy-${this.replicas.length + 1}`,
      port: await freePort(),
      track,
      env,
    };
    this.replicas.push(replica);
    return replica;
  }

  cli = async (args: string[], input = '') => {
    const result = await runAsync(process.execPath, [MAIN, ...args], {
      cwd: this.dir,
      env: this.baseEnv,
      input,
    });
    assert.equal(result.code, 0, `colloquy ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
    return result.stdout;
  };

  get = (url: string, headers: Record<string, string> = {}) =>
    request(url, { method: 'GET', headers, dispatcher: this.agent });

  /** POST /v1/chat/completions through nginx, as the admin (never rate limited) unless headers say otherwise. */
  chat = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    request(`${this.edge}/v1/chat/completions`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: { authorization: `Bearer ${this.adminKey}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'Say hello' }],
        ...body,
      }),
    });

  /**
   * A JSON call to the API with the user's key (or the given authorization): through nginx, or straight to
   * a replica when `replica` is given (as nginx would forward it: over HTTPS, from a trusted proxy).
   */
  api = (
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
    replica?: Replica,
  ) =>
    request(`${replica ? `http://127.0.0.1:${replica.port}` : this.edge}${route}`, {
      method,
      dispatcher: this.agent,
      headers: {
        authorization: `Bearer ${this.apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(replica ? { 'x-forwarded-proto': 'https' } : {}),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  /**
   * One conversation turn (through nginx, or straight to `replica`): POST /api/conversations/:id/messages with the user's key,
   * answered with server-sent events (message, start, delta…, done or error) read to the end. `onHeaders`
   * is told when the answer's headers arrive (its status and worker known), the stream still to be read.
   */
  async sendMessage(
    conversationId: string,
    content: string,
    requestId: string,
    replica?: Replica,
    onHeaders?: (turn: TurnResult) => void,
  ): Promise<TurnResult> {
    const turn: TurnResult = { requestId, status: 0, events: [], text: '' };
    let raw = '';
    try {
      const res = await this.api(
        'POST',
        `/api/conversations/${conversationId}/messages`,
        { content },
        { 'x-request-id': requestId },
        replica,
      );
      turn.status = res.statusCode;
      if (res.headers['x-colloquy-worker']) turn.worker = String(res.headers['x-colloquy-worker']);
      onHeaders?.(turn);
      res.body.setEncoding('utf8');
      // Read event by event: a stream cut off mid-way still tells which messages it had announced.
      for await (const chunk of res.body) {
        raw += chunk;
        let end = raw.indexOf('\n\n');
        while (res.statusCode === 200 && end >= 0) {
          readEvent(turn, raw.slice(0, end));
          raw = raw.slice(end + 2);
          end = raw.indexOf('\n\n');
        }
      }
    } catch (err) {
      turn.failure = `the stream broke after ${turn.events.join(', ') || 'nothing'}: ${err}`;
      return turn;
    }
    if (turn.status !== 200) turn.failure = `${turn.status} ${raw.slice(0, 200)}`;
    else if (turn.events.at(-1) !== 'done')
      turn.failure = `the stream ended after ${turn.events.join(', ') || 'nothing'}`;
    return turn;
  }

  /**
   * A streamed /v1/chat/completions through nginx: its text, and a failure unless it ended with [DONE]
   * (`headers` over the admin's; `worker`: X-Colloquy-Worker, when headers arrived).
   */
  async streamChat(
    requestId: string,
    body: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    let res: Awaited<ReturnType<RehearsalStack['chat']>>;
    try {
      res = await this.chat({ stream: true, ...body }, { 'x-request-id': requestId, ...headers });
    } catch (err) {
      return { requestId, status: 0, text: '', failure: `the stream broke: ${err}` };
    }
    const worker = res.headers['x-colloquy-worker'] ? String(res.headers['x-colloquy-worker']) : undefined;
    let raw: string;
    try {
      raw = await res.body.text();
    } catch (err) {
      return { requestId, status: res.statusCode, text: '', worker, failure: `the stream broke: ${err}` };
    }
    const text = [...raw.matchAll(/"content":"([^"]*)"/g)].map((m) => m[1]).join('');
    const failure =
      res.statusCode !== 200
        ? `${res.statusCode} ${raw.slice(0, 200)}`
        : !/data: \[DONE\]\s*$/.test(raw)
          ? `the stream ended without [DONE]: ${raw.slice(-200)}`
          : undefined;
    return { requestId, status: res.statusCode, text, failure, worker };
  }

  /** Prometheus' HTTP API: the `data` of a successful answer. */
  prom = async <T = PromData>(endpoint: string): Promise<T> => {
    const res = await fetch(`${this.promUrl}${endpoint}`);
    const json = (await res.json()) as { status: string; data: T };
    assert.equal(json.status, 'success', JSON.stringify(json));
    return json.data;
  };

  /** An instant query's result vector. */
  query = async (promql: string) =>
    (await this.prom(`/api/v1/query?query=${encodeURIComponent(promql)}`)).result;

  /** nginx's JSON access log, one object per request. */
  accessLog(): {
    request_id: string;
    status: number;
    upstream_addr: string;
    upstream_status: string;
    uri: string;
  }[] {
    const file = path.join(this.nginxDir, 'access.log');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  }

  /**
   * nginx's access log by request id, once it has a line for each of `ids` (or after 5 s): nginx writes a
   * request's line after the response has gone out, so a client can be done before its line is written.
   */
  async accessLogOf(ids: string[]) {
    const deadline = Date.now() + 5000;
    for (;;) {
      const log = new Map(this.accessLog().map((l) => [l.request_id, l]));
      if (ids.every((id) => log.has(id)) || Date.now() > deadline) return log;
      await sleep(100);
    }
  }

  /**
   * Renders nginx's upstream (the replicas with `routed`) and Prometheus' targets (every replica) again and
   * reloads both with SIGHUP, as an operator adding a replica would; waits until Prometheus scrapes them all.
   */
  async reconfigure(routed: Replica[], scraped: Replica[]) {
    this.#renderNginx(routed);
    this.#renderPrometheus(scraped);
    this.prometheus!.child.kill('SIGHUP');
    await this.reloadNginx();
    const wanted = scraped.map((r) => `127.0.0.1:${r.port}`).sort();
    await eventually(
      async () => {
        const active = (await this.prom('/api/v1/targets')).activeTargets;
        const up = active.filter((t) => t.health === 'up').map((t) => t.labels.instance!);
        return JSON.stringify(up.sort()) === JSON.stringify(wanted);
      },
      `Prometheus scraping ${wanted.join(', ')}\n${tail(path.join(this.dir, 'prometheus.log'))}`,
      20_000,
    );
  }

  /**
   * Takes replicas out of nginx's upstream (`down`) or puts them back, then checks and reloads nginx: the
   * kit's deploy/scripts/nginx-route on this nginx's rendered configuration, as deploy/scripts/lib.sh runs
   * it in the nginx container around each replica it replaces.
   */
  async route(state: 'out' | 'in', replicas: Replica[]) {
    const result = await runAsync(
      'sh',
      [
        NGINX_ROUTE,
        state,
        path.join(this.nginxDir, 'colloquy.d', 'colloquy.conf'),
        ...replicas.map((r) => `127.0.0.1:${r.port}`),
        '--',
        ...nginxArgs(this.#nginxRender!),
      ],
      { cwd: this.dir, env: { PATH: this.baseEnv.PATH! } },
    );
    assert.equal(result.code, 0, `nginx-route ${state} failed:\n${result.stdout}${result.stderr}`);
  }

  /** A reload after re-rendering (SIGHUP, as `nginx -s reload` sends); the old workers finish their requests. */
  async reloadNginx() {
    this.nginx!.child.kill('SIGHUP');
    // The new workers take over within a moment; the old ones finish what they were serving.
    await sleep(1000);
  }

  #renderNginx(routed: Replica[]) {
    this.#nginxRender = renderNginx({
      dir: this.nginxDir,
      upstreams: routed.map((r) => `127.0.0.1:${r.port}`),
      httpPort: this.#httpPort,
      httpsPort: this.edgePort,
      ...this.#certificate!,
    });
    return this.#nginxRender;
  }

  #renderPrometheus(scraped: Replica[]) {
    return renderPrometheus({
      dir: path.join(this.dir, 'prometheus'),
      targets: scraped.map((r) => `127.0.0.1:${r.port}`),
      labels: { namespace: NAMESPACE },
      tokenFile: this.#promConfig.tokenFile,
      ...(this.#promConfig.alertmanager ? { alertmanager: this.#promConfig.alertmanager } : {}),
      interval: '1s',
      alertFor: '2s',
    });
  }

  async #startAlertmanager() {
    this.#webhook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d;
      });
      req.on('end', () => {
        this.notifications.push(JSON.parse(body));
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => this.#webhook!.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(this.#webhook.address() as AddressInfo).port}`;
    const am = parseYaml(read('deploy/alertmanager/alertmanager.yml')) as {
      route: { group_wait: string; routes: { group_wait?: string }[] };
      receivers: { name: string; webhook_configs: { url: string }[] }[];
    };
    am.route.group_wait = '0s';
    for (const r of am.route.routes) r.group_wait = '0s';
    for (const receiver of am.receivers) receiver.webhook_configs[0]!.url = `${hook}/${receiver.name}`;
    const amDir = path.join(this.dir, 'alertmanager');
    mkdirSync(amDir);
    writeFileSync(path.join(amDir, 'alertmanager.yml'), toYaml(am));
    const amPort = await freePort();
    this.start(
      'alertmanager',
      which('prometheus-alertmanager')!,
      [
        `--config.file=${path.join(amDir, 'alertmanager.yml')}`,
        `--storage.path=${amDir}`,
        `--web.listen-address=127.0.0.1:${amPort}`,
        '--cluster.listen-address=',
      ],
      { PATH: this.baseEnv.PATH! },
    );
    return `127.0.0.1:${amPort}`;
  }

  async open(options: StackOptions) {
    assert.deepEqual(
      missingTools,
      [],
      'the rehearsal needs these tools (run .ci/install-deploy-tools): required when CI=true',
    );
    markSuiteRan('redis');
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-rehearsal-'));
    await ensureBuilt();
    this.db = await createTestDatabase(options.dialect ?? 'postgres');
    this.#workers = options.workers;
    this.fake = await startFakeUpstream({
      apiKey: UPSTREAM_KEY,
      reply: UPSTREAM_REPLY,
      models: ['gpt-4o-mini'],
      ...options.upstream,
    });
    this.baseEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.dir,
      COLLOQUY_ENV: 'production',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      DATABASE_URL: this.db.url,
      REDIS_URL: process.env.TEST_REDIS_URL!,
      SECRET_KEY: this.secretKey,
      COLLOQUY_ADMIN_KEY: this.adminKey,
      METRICS_TOKEN: this.metricsToken,
      OPENAI_BASE_URL: this.fake.baseUrl,
      OPENAI_API_KEY: UPSTREAM_KEY,
      HTTPS_ONLY: 'true',
      // Off by default in production; on here so the edge's gzip is checked on the OpenAPI document.
      ENABLE_DOCS: 'true',
      TRUST_PROXY: '127.0.0.1',
      LOG_LEVEL: 'warn',
      LOG_FORMAT: 'json',
      SHUTDOWN_TIMEOUT: '5',
      // As compose.yaml sets it: nginx retires its pooled connections before the listener closes.
      SHUTDOWN_DELAY: '2',
      // Colloquy's own per-key limits are off unless a suite turns them on; load shedding is off (on a
      // busy CI machine running Prometheus, nginx and the replicas the event loop can lag past 1 s).
      RATE_LIMIT_ENABLED: 'false',
      OVERLOAD_MAX_EVENT_LOOP_DELAY_MS: '10000',
      ...options.env,
    };

    await options.beforeMigrate?.(this);
    assert.match(await this.cli(['migrate', 'up']), /^applied: /m);
    await this.cli(
      ['users', 'create', '--email', 'rehearsal@example.com', '--password-stdin', '--json'],
      'Rehearsal-Pa55word-1234!\n',
    );
    this.apiKey = (
      JSON.parse(
        await this.cli([
          'keys',
          'create',
          '--user',
          'rehearsal@example.com',
          '--name',
          'rehearsal',
          '--json',
        ]),
      ) as { key: string }
    ).key;

    for (const track of options.tracks) await this.addReplica(track);
    // All started at once, then awaited: start-up is mostly waiting on the database and Redis.
    for (const r of this.replicas) this.#spawnReplica(r);
    for (const r of this.replicas) await this.waitReady(r);

    // Prometheus with the kit's configuration and rules: 1 s scrapes and evaluations, `for:` shortened.
    const promDir = path.join(this.dir, 'prometheus');
    this.#promConfig.tokenFile = path.join(this.dir, 'metrics_token');
    writeFileSync(this.#promConfig.tokenFile, this.metricsToken);
    if (options.alertmanager) this.#promConfig.alertmanager = await this.#startAlertmanager();
    const promConfig = this.#renderPrometheus(this.replicas);
    const promPort = await freePort();
    this.promUrl = `http://127.0.0.1:${promPort}`;
    this.prometheus = this.start(
      'prometheus',
      which('prometheus')!,
      [
        `--config.file=${promConfig}`,
        `--storage.tsdb.path=${path.join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { PATH: this.baseEnv.PATH! },
    );

    // nginx with the kit's configuration, TLS with an openssl test certificate.
    this.#certificate = makeCertificate(undefined, this.dir)!;
    this.agent = new Agent({
      connect: { ca: readFileSync(this.#certificate.cert) },
      keepAliveTimeout: 10_000,
    });
    this.edgePort = await freePort();
    this.#httpPort = await freePort();
    const render = this.#renderNginx(this.replicas);
    this.edge = `https://127.0.0.1:${this.edgePort}`;
    this.nginx = this.start('nginx', which('nginx')!, nginxArgs(render, [' daemon off;']), {
      PATH: this.baseEnv.PATH!,
    });
    await eventually(
      async () => (await this.get(`${this.edge}/health/live`)).statusCode === 200,
      `nginx serving\n${tail(path.join(render.dir, 'error.log'))}`,
      15_000,
    );
    await eventually(
      async () => (await fetch(`${this.promUrl}/-/ready`)).ok,
      `prometheus ready\n${tail(path.join(this.dir, 'prometheus.log'))}`,
    );
    return this;
  }

  async close() {
    for (const p of [...this.procs].reverse()) await this.stop(p);
    await this.fake?.close();
    await new Promise<void>((resolve) => (this.#webhook ? this.#webhook.close(() => resolve()) : resolve()));
    await this.agent?.close();
    await this.db?.drop();
    // REHEARSAL_KEEP=1 keeps the logs, configurations and data for a look after a failure.
    if (process.env.REHEARSAL_KEEP) console.log(`# rehearsal files kept in ${this.dir}`);
    else if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * An upstream for a faulty canary: forwards to `target` (a fake upstream) but answers 500 to one chat
 * prompt in `oneIn`, chosen by a hash of the request's messages, so every retry of a failing request fails
 * too and the fault reaches the client as a canary bug would. Only the canary is pointed at it: no
 * product code has a fault switch.
 */
export async function startFaultyUpstream(target: FakeUpstream, oneIn: number) {
  let failed = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url === '/v1/chat/completions') {
        const messages = JSON.stringify(
          (JSON.parse(body.toString('utf8')) as { messages: unknown }).messages,
        );
        if (createHash('sha256').update(messages).digest().readUInt32BE(0) % oneIn === 0) {
          failed++;
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify({ error: { message: 'injected canary fault', type: 'server_error', code: null } }),
          );
          return;
        }
      }
      const forward = http.request(
        `${target.url}${req.url}`,
        { method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      forward.on('error', () => res.destroy());
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    /** Upstream requests answered with the injected 500. */
    failed: () => failed,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
