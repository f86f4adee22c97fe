import assert from 'node:assert/strict';
import { type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { EnvSchema } from '../../src/config/schema.js';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEPLOY = path.join(ROOT, 'deploy');
export const CI = process.env.CI === 'true' || process.env.CI === '1';

/** The default of a Colloquy variable, from src/config/schema.ts. */
export const envDefault = (name: keyof typeof EnvSchema.properties): number | string | undefined =>
  (EnvSchema.properties[name] as { default?: number | string }).default;

export const read = (relative: string) => readFileSync(path.join(ROOT, relative), 'utf8');
/** YAML with merge keys (`<<: *anchor`) resolved, as compose reads it. */
export const readYaml = <T = Record<string, unknown>>(relative: string): T =>
  parseYaml(read(relative), { merge: true }) as T;
export const readYamlDocuments = (file: string): Record<string, unknown>[] =>
  parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Record<string, unknown>;
  });

/** Every file under dir (recursively) whose name matches. */
export function filesUnder(dir: string, match: RegExp): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(full, match);
    return match.test(e.name) ? [full] : [];
  });
}

const SEARCH_PATH = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The absolute path of an executable on PATH (or /usr/sbin), or undefined. */
export function which(command: string): string | undefined {
  for (const dir of SEARCH_PATH) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * The path of a tool the test needs. Missing: outside CI the test is skipped, saying why; in CI
 * (CI=true) the test fails — the kit must be checked with its real tools there.
 */
export function requireTool(t: TestContext, command: string, pkg = command): string | undefined {
  const found = which(command);
  if (found) return found;
  const why = `${command} is not installed (Debian package ${pkg}; run .ci/install-deploy-tools)`;
  if (CI) assert.fail(`${why}: required when CI=true`);
  console.log(`# skipping "${t.name}": ${why}`);
  t.skip(why);
  return undefined;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(
  command: string,
  args: string[],
  options: SpawnOptions & { input?: string } = {},
): RunResult {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options } as Parameters<
    typeof spawnSync
  >[2]);
  if (result.error) throw result.error;
  return { code: result.status, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
}

/** Asserts a command exited 0, showing its output when it did not. */
export function assertRan(result: RunResult, what: string) {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
}

export async function runAsync(
  command: string,
  args: string[],
  options: SpawnOptions & { input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin!.end(options.input ?? '');
  });
}

export { freePort } from '../helpers/net.js';

/** A self-signed certificate for localhost / 127.0.0.1, made by openssl (t: skip or fail the test without it). */
export function makeCertificate(
  t: TestContext | undefined,
  dir: string,
): { cert: string; key: string } | undefined {
  const openssl = t ? requireTool(t, 'openssl') : which('openssl');
  if (!openssl) return undefined;
  const cert = path.join(dir, 'tls.crt');
  const key = path.join(dir, 'tls.key');
  assertRan(
    run(openssl, [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      key,
      '-out',
      cert,
    ]),
    'openssl req',
  );
  return { cert, key };
}

// --- nginx ------------------------------------------------------------------------------------------

export interface NginxRender {
  /** Where the rendered nginx.conf and its includes are (the prefix for `nginx -p`). */
  dir: string;
  conf: string;
}

/** Replaces ${NAME} (and only the listed names, as the nginx image's envsubst does with its filter). */
export function envsubst(text: string, vars: Record<string, string>): string {
  return text.replace(/\$\{([A-Z0-9_]+)\}/g, (whole, name: string) => vars[name] ?? whole);
}

/**
 * The kit's nginx configuration as the nginx image would render it, rewritten for a test: the replicas
 * become the given local addresses, ports 80/443 become local ports, the certificate and the temp
 * paths live in `dir`. Everything else is the kit's text, unchanged.
 */
export function renderNginx(options: {
  dir: string;
  /** Replica addresses, each optionally followed by server parameters (`127.0.0.1:8001 weight=2`). */
  upstreams: string[];
  httpPort: number;
  httpsPort: number;
  cert: string;
  key: string;
  maxBodySize?: number;
}): NginxRender {
  const { dir } = options;
  mkdirSync(path.join(dir, 'colloquy.d'), { recursive: true });
  mkdirSync(path.join(dir, 'snippets'), { recursive: true });
  for (const file of readdirSync(path.join(DEPLOY, 'nginx', 'snippets'))) {
    copyFileSync(path.join(DEPLOY, 'nginx', 'snippets', file), path.join(dir, 'snippets', file));
  }
  // The image ships mime.types beside nginx.conf; so does Debian's nginx package.
  if (existsSync('/etc/nginx/mime.types'))
    copyFileSync('/etc/nginx/mime.types', path.join(dir, 'mime.types'));
  else
    writeFileSync(path.join(dir, 'mime.types'), 'types {\n  application/json json;\n  text/html html;\n}\n');

  // Temp files in the prefix, not in the package's /var/lib/nginx.
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `  ${kind}_temp_path ${path.join(dir, 'tmp', kind)};`)
    .join('\n');
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const main = read('deploy/nginx/nginx.conf')
    .replace(/^http \{$/m, `http {\n${temp}`)
    .replaceAll('/var/log/nginx/', `${dir}/`);
  assert.notEqual(main, read('deploy/nginx/nginx.conf'), 'nginx.conf has no `http {` line');
  writeFileSync(path.join(dir, 'nginx.conf'), main);

  let servers = envsubst(read('deploy/nginx/templates/colloquy.conf.template'), {
    NGINX_SERVER_NAME: '_',
    NGINX_TLS_CERTIFICATE: options.cert,
    NGINX_TLS_CERTIFICATE_KEY: options.key,
    NGINX_MAX_BODY_SIZE: String(options.maxBodySize ?? 1_048_576),
  });
  const replicaLines = /^(\s*)server colloquy-\d+:8000( .*;)$/gm;
  const found = [...servers.matchAll(replicaLines)];
  assert.ok(found.length > 0, 'no `server colloquy-N:8000` line in the upstream');
  let first = true;
  servers = servers.replace(replicaLines, (_line, indent: string, params: string) => {
    if (!first) return '';
    first = false;
    return options.upstreams.map((u) => `${indent}server ${u}${params}`).join('\n');
  });
  servers = servers
    .replace(/listen 80 default_server;/, `listen 127.0.0.1:${options.httpPort} default_server;`)
    .replace(
      /listen 443 ssl http2 default_server;/,
      `listen 127.0.0.1:${options.httpsPort} ssl http2 default_server;`,
    );
  assert.ok(servers.includes(`127.0.0.1:${options.httpPort}`), 'the template has no `listen 80` line');
  assert.ok(servers.includes(`127.0.0.1:${options.httpsPort}`), 'the template has no `listen 443 ssl` line');
  assert.doesNotMatch(servers, /\$\{NGINX_[A-Z_]+\}/, 'a template variable was left unrendered');
  writeFileSync(path.join(dir, 'colloquy.d', 'colloquy.conf'), servers);
  return { dir, conf: path.join(dir, 'nginx.conf') };
}

/** Arguments for nginx that keep every file it writes (pid, logs) in the render's directory. */
export const nginxArgs = (render: NginxRender, extra: string[] = []) => [
  '-p',
  render.dir,
  '-c',
  render.conf,
  '-e',
  path.join(render.dir, 'error.log'),
  '-g',
  `pid ${path.join(render.dir, 'nginx.pid')};${extra.join('')}`,
];

// --- Prometheus -------------------------------------------------------------------------------------

/** deploy/prometheus/prometheus.yml with test targets and a token file, rules copied beside it. */
export function renderPrometheus(options: {
  dir: string;
  targets: string[];
  /** Labels every target gets (as service discovery would add `namespace`). */
  labels?: Record<string, string>;
  tokenFile: string;
  alertmanager?: string;
  interval?: string;
  /** Rewrites every alert's `for:` (e.g. 2s) so a rehearsal sees it fire. */
  alertFor?: string;
}): string {
  const { dir } = options;
  mkdirSync(path.join(dir, 'rules'), { recursive: true });
  const config = readYaml<PrometheusConfig>('deploy/prometheus/prometheus.yml');
  const colloquy = config.scrape_configs.find((s) => s.job_name === 'colloquy');
  assert.ok(colloquy, 'prometheus.yml has no colloquy job');
  colloquy.static_configs = [
    { targets: options.targets, ...(options.labels ? { labels: options.labels } : {}) },
  ];
  assert.ok(colloquy.authorization?.credentials_file, 'the colloquy job sends no METRICS_TOKEN');
  colloquy.authorization.credentials_file = options.tokenFile;
  config.scrape_configs = [colloquy];
  if (options.interval) {
    config.global.scrape_interval = options.interval;
    config.global.evaluation_interval = options.interval;
    config.global.scrape_timeout = options.interval;
  }
  if (options.alertmanager) {
    config.alerting = { alertmanagers: [{ static_configs: [{ targets: [options.alertmanager] }] }] };
  } else {
    delete config.alerting;
  }
  for (const file of readdirSync(path.join(DEPLOY, 'prometheus', 'rules'))) {
    let text = read(`deploy/prometheus/rules/${file}`);
    if (options.alertFor) text = text.replace(/^(\s+)for: \S+$/gm, `$1for: ${options.alertFor}`);
    writeFileSync(path.join(dir, 'rules', file), text);
  }
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export interface PrometheusConfig {
  global: Record<string, string>;
  rule_files: string[];
  alerting?: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: {
    job_name: string;
    static_configs: { targets: string[]; labels?: Record<string, string> }[];
    authorization?: { type?: string; credentials_file?: string };
  }[];
}

export interface RuleGroup {
  name: string;
  rules: {
    alert?: string;
    record?: string;
    expr: string;
    for?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  }[];
}

export const ruleGroups = (file: string): RuleGroup[] =>
  (readYaml<{ groups: RuleGroup[] }>(`deploy/prometheus/rules/${file}`).groups ?? []) as RuleGroup[];

/** Polls fn until it returns a truthy value or the time is up (then the last error or a timeout). */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  what: string,
  timeoutMs = 30_000,
) {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await fn();
      if (value) return value as T;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError}` : ''}`);
}
