import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EnvSchema } from '../../src/config/schema.js';
import {
  assertRan,
  envDefault,
  filesUnder,
  ROOT,
  read,
  readYaml,
  requireTool,
  run,
  runAsync,
} from './helpers.js';

const dockerfile = read('Dockerfile');
/** Without comment lines: what Docker executes. */
const dockerInstructions = dockerfile
  .split('\n')
  .filter((l) => !l.trim().startsWith('#'))
  .join('\n');
const pkg = JSON.parse(read('package.json')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  allowScripts?: Record<string, boolean>;
};

interface Stage {
  name: string;
  from: string;
  lines: string[];
}

/** The Dockerfile's stages with ARG defaults substituted and continuation lines joined. */
function stages(): Stage[] {
  const args = new Map<string, string>();
  const joined = dockerfile.replace(/\\\n/g, ' ');
  const out: Stage[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const arg = /^ARG (\w+)=(\S+)$/.exec(line);
    if (arg && out.length === 0) args.set(arg[1]!, arg[2]!);
    const from = /^FROM (\S+) AS (\S+)$/i.exec(line);
    if (from) {
      const image = from[1]!.replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? `\${${n}}`);
      out.push({ name: from[2]!, from: image, lines: [] });
    } else {
      out.at(-1)?.lines.push(line);
    }
  }
  return out;
}

/** Docker's .dockerignore semantics, simplified: globs from the context root, last match wins, `!` re-includes. */
function dockerIgnored(file: string): boolean {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let ignored = false;
  for (const p of patterns) {
    const negate = p.startsWith('!');
    const glob = negate ? p.slice(1) : p;
    const re = new RegExp(
      `^${glob
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*\*\//g, '(?:.*/)?')
        .replace(/\*/g, '[^/]*')}(?:/.*)?$`,
    );
    if (re.test(file)) ignored = !negate;
  }
  return ignored;
}

/** Bare-specifier packages imported (at run time, not `import type`) by everything reachable from src/main.ts. */
function runtimeImports(): Map<string, string> {
  const seen = new Set<string>();
  const packages = new Map<string, string>();
  const queue = [path.join(ROOT, 'src', 'main.ts')];
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    const specifiers = [
      ...text.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm),
      ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
    ].map((m) => m[1]!);
    for (const s of specifiers) {
      if (s.startsWith('.')) {
        const target = path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts'));
        if (existsSync(target)) queue.push(target);
        else if (existsSync(`${target}.ts`)) queue.push(`${target}.ts`);
        else if (existsSync(path.join(target, 'index.ts'))) queue.push(path.join(target, 'index.ts'));
      } else if (!s.startsWith('node:')) {
        const name = s.startsWith('@') ? s.split('/').slice(0, 2).join('/') : s.split('/')[0]!;
        packages.set(name, path.relative(ROOT, file));
      }
    }
  }
  return packages;
}

/** A throwaway HTTP server answering `status` on every path. */
async function answering(status: number) {
  const server = http.createServer((_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('Dockerfile', () => {
  const all = stages();
  const runtime = all.at(-1)!;

  it('is multi-stage on node:24-bookworm-slim (an LTS line), building with dev dependencies and shipping prod ones', () => {
    assert.ok(all.length >= 3, 'several stages');
    for (const s of all.filter((s) => !all.some((o) => o.name === s.from))) {
      assert.equal(s.from, 'node:24-bookworm-slim', `stage ${s.name} starts from node:24-bookworm-slim`);
    }
    const text = (s: Stage) => s.lines.join('\n');
    const build = all.find((s) => /npm run build/.test(text(s)));
    assert.ok(build, 'a stage runs npm run build');
    const chain = (s: Stage): Stage[] => {
      const parent = all.find((o) => o.name === s.from);
      return parent ? [s, ...chain(parent)] : [s];
    };
    assert.ok(
      chain(build).some((s) => /RUN .*npm ci(?! --omit)/.test(text(s))),
      'the build stage has every dependency (npm ci)',
    );
    const prodDeps = all.find((s) => /npm ci --omit=dev/.test(text(s)));
    assert.ok(prodDeps, 'a stage runs npm ci --omit=dev');
    assert.match(text(runtime), new RegExp(`COPY --from=${prodDeps.name} .*node_modules`));
    assert.match(text(runtime), new RegExp(`COPY --from=${build.name} .*dist`));
    assert.doesNotMatch(
      text(runtime),
      /npm (ci|install)(?! --omit)/,
      'no dev dependencies in the runtime stage',
    );
  });

  it('runs the native modules’ install scripts (allowScripts) and nothing disables them', () => {
    assert.ok(!/--ignore-scripts/.test(dockerInstructions), 'no instruction passes --ignore-scripts');
    for (const native of ['better-sqlite3', 'argon2']) {
      assert.ok(pkg.dependencies[native], `${native} is a runtime dependency`);
      assert.equal(pkg.allowScripts?.[native], true, `package.json allowScripts lets ${native} build`);
    }
    // node-gyp's toolchain is there for when no prebuilt binary fits.
    assert.ok(/python3 make g\+\+/.test(dockerInstructions), 'python3 make g++ are installed for node-gyp');
  });

  it('ships every package the server imports at run time (npm ci --omit=dev is enough)', () => {
    const imports = runtimeImports();
    assert.ok(imports.size > 5, 'found the runtime imports');
    for (const [name, from] of imports) {
      assert.ok(
        pkg.dependencies[name],
        `${name} (imported by ${from}) must be in dependencies${pkg.devDependencies[name] ? ', not devDependencies' : ''}`,
      );
    }
  });

  it('runs as a non-root user, under tini, on port 8000 with NODE_ENV=production', () => {
    const text = runtime.lines.join('\n');
    const user = /^USER (\S+)/m.exec(text)?.[1];
    assert.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user} is not root`);
    assert.match(text, /useradd --system --uid 10001/);
    assert.match(text, /ENTRYPOINT \["\/usr\/bin\/tini", "--", "node", "\/app\/dist\/main.js"\]/);
    assert.match(text, /CMD \["serve"\]/);
    assert.match(text, /STOPSIGNAL SIGTERM/);
    assert.equal(/^EXPOSE (\d+)/m.exec(text)?.[1], String(Number(envDefault('PORT'))));
    assert.match(text, /NODE_ENV=production/);
    assert.match(text, /postgresql-client-\$\{PG_MAJOR\}/, 'pg_dump for colloquy backup');
  });

  it('has a HEALTHCHECK on /health/live that really works (node fetch, no curl)', async () => {
    const cmd = /HEALTHCHECK .*?CMD (\[.*\])/.exec(runtime.lines.join('\n'))?.[1];
    assert.ok(cmd, 'HEALTHCHECK CMD [...]');
    const argv = JSON.parse(cmd) as string[];
    assert.equal(argv[0], 'node');
    assert.match(argv.join(' '), /\/health\/live/);
    const probe = (port: number) =>
      runAsync(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH, PORT: String(port) } });
    const ok = await answering(200);
    const failing = await answering(503);
    try {
      assert.equal((await probe(ok.port)).code, 0, 'healthy on 200');
      assert.equal((await probe(failing.port)).code, 1, 'unhealthy on 503');
    } finally {
      ok.server.close();
      failing.server.close();
    }
    const closed = await answering(200);
    closed.server.close();
    assert.equal((await probe(closed.port)).code, 1, 'unhealthy when nothing listens');
  });

  it('.dockerignore keeps secrets, local state and node_modules out and the build inputs in', () => {
    for (const f of [
      '.env',
      '.env.production',
      'node_modules/x/index.js',
      'dist/main.js',
      'data/colloquy.db',
      '.git/HEAD',
      'deploy/nginx/certs/tls.key',
    ]) {
      assert.ok(dockerIgnored(f), `${f} is ignored`);
    }
    for (const f of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'src/main.ts',
    ]) {
      assert.ok(!dockerIgnored(f), `${f} reaches the build`);
    }
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)) {
      for (const source of m[1]!.split(/\s+/)) {
        assert.ok(existsSync(path.join(ROOT, source)), `COPY source ${source} exists`);
        assert.ok(!dockerIgnored(source), `COPY source ${source} is not excluded by .dockerignore`);
      }
    }
  });
});

type Service = {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
  stop_grace_period?: string;
  read_only?: boolean;
  restart?: string;
  secrets?: { source: string }[];
  ulimits?: { nofile?: { soft: number; hard: number } };
};

describe('compose.yaml (production stack)', () => {
  const compose = readYaml<{
    services: Record<string, Service>;
    volumes: Record<string, unknown>;
    secrets: Record<string, unknown>;
  }>('compose.yaml');
  const services = compose.services;
  const replicas = Object.keys(services).filter((s) => /^colloquy-\d+$/.test(s));
  let ok: { server: http.Server; port: number };
  let failing: { server: http.Server; port: number };
  before(async () => {
    ok = await answering(200);
    failing = await answering(503);
  });
  after(() => {
    ok.server.close();
    failing.server.close();
  });

  it('runs three replicas of one image, gated on readiness, after the one-shot migration', () => {
    assert.equal(replicas.length, 3);
    for (const name of replicas) {
      const s = services[name]!;
      assert.match(s.image ?? '', /^\$\{COLLOQUY_IMAGE:-.+\}$/);
      assert.equal(
        s.build,
        undefined,
        `${name} runs a tagged image; a mistyped tag must not build the checkout`,
      );
      assert.match(
        JSON.stringify(s.healthcheck?.test),
        /\/health\/ready/,
        `${name} healthcheck is readiness`,
      );
      assert.equal(s.depends_on?.migrate?.condition, 'service_completed_successfully');
      assert.equal(s.depends_on?.postgres?.condition, 'service_healthy');
      assert.equal(s.depends_on?.redis?.condition, 'service_healthy');
      assert.equal(s.environment?.COLLOQUY_ENV, 'production');
      assert.equal(s.read_only, true);
      const grace = Number(/^(\d+)s$/.exec(s.stop_grace_period ?? '')?.[1]);
      const drain = Number(/:-(\d+)\}/.exec(s.environment?.SHUTDOWN_TIMEOUT ?? '')?.[1]);
      assert.ok(grace > drain, `${name}: stop_grace_period ${grace}s > SHUTDOWN_TIMEOUT ${drain}s`);
      // Two sockets per open stream: 10,000 streams must fit in the descriptor limit.
      assert.ok((s.ulimits?.nofile?.soft ?? 0) >= 2 * 10_000 + 1024, `${name}: ulimits.nofile`);
    }
    const migrate = services.migrate!;
    assert.deepEqual(migrate.command, ['migrate', 'up']);
    assert.equal(migrate.restart, 'no');
    assert.equal(migrate.depends_on?.postgres?.condition, 'service_healthy');
  });

  it('sets only variables Colloquy knows (src/config/schema.ts)', () => {
    for (const name of [...replicas, 'migrate']) {
      for (const key of Object.keys(services[name]!.environment ?? {})) {
        assert.ok(key in EnvSchema.properties, `${name}: ${key} is a Colloquy variable`);
      }
    }
  });

  it('runs PostgreSQL 16 and Redis 7 (AOF) with volumes and healthchecks', () => {
    const pg = services.postgres!;
    assert.match(pg.image ?? '', /^postgres:16/);
    assert.ok(pg.volumes?.some((v) => v.endsWith(':/var/lib/postgresql/data')));
    assert.match(JSON.stringify(pg.healthcheck?.test), /pg_isready/);
    const redis = services.redis!;
    assert.match(redis.image ?? '', /^redis:7/);
    const args = redis.command!.join(' ');
    assert.match(args, /--appendonly yes/);
    assert.ok(redis.volumes?.some((v) => v.endsWith(':/data')));
    assert.match(JSON.stringify(redis.healthcheck?.test), /ping/);
  });

  it('starts nginx after every replica is healthy, Prometheus/Alertmanager/Grafana with the kit mounted', () => {
    const nginx = services.nginx!;
    for (const r of replicas) assert.equal(nginx.depends_on?.[r]?.condition, 'service_healthy');
    for (const name of ['nginx', 'prometheus', 'alertmanager', 'grafana']) {
      for (const v of services[name]!.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (source.startsWith('./'))
          assert.ok(existsSync(path.join(ROOT, source)), `${name} mounts ${source}, which exists`);
      }
    }
    assert.ok(services.prometheus!.secrets?.some((s) => s.source === 'metrics_token'));
    assert.ok(compose.secrets.metrics_token);
    assert.equal(services.alertmanager!.depends_on, undefined);
    assert.equal(services.grafana!.depends_on?.prometheus?.condition, 'service_healthy');
  });

  it('takes every secret from .env: required variables are documented', () => {
    const text = read('compose.yaml')
      .split('\n')
      .filter((l) => !l.trim().startsWith('#'))
      .join('\n');
    const documented = `${read('.env.example')}\n${read('deploy/compose.env.example')}`;
    const required = new Set([...text.matchAll(/\$\{(\w+):\?/g)].map((m) => m[1]!));
    assert.ok(required.has('SECRET_KEY') && required.has('POSTGRES_PASSWORD'));
    const variables = new Set([...text.matchAll(/\$\{(\w+)(?::[-?][^}]*)?\}/g)].map((m) => m[1]!));
    const undocumented = [...variables].filter((name) => !new RegExp(`^${name}=`, 'm').test(documented));
    assert.deepEqual(
      undocumented,
      [],
      'every variable compose.yaml reads is in .env.example or deploy/compose.env.example',
    );
  });

  it('its healthcheck commands work (run against a local server)', async () => {
    const probe = async (test: string[], port: number) => {
      assert.equal(test[0], 'CMD');
      const argv = test.slice(1).map((a) => a.replace('127.0.0.1:8000', `127.0.0.1:${port}`));
      return (await runAsync(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH } })).code;
    };
    const test = services['colloquy-1']!.healthcheck!.test!;
    assert.equal(await probe(test, ok.port), 0);
    assert.equal(await probe(test, failing.port), 1);
  });
});

describe('compose.dev.yaml (development)', () => {
  const dev = readYaml<{ services: Record<string, Service> }>('compose.dev.yaml');

  it('is one replica with hot reload (tsx watch) on SQLite, the source mounted', () => {
    const names = Object.keys(dev.services);
    assert.equal(names.length, 1);
    const s = dev.services[names[0]!]!;
    assert.match(s.command!.join(' '), /tsx watch .*src\/main\.ts serve/);
    assert.ok(s.volumes?.includes('.:/app'));
    assert.match(s.environment?.DATABASE_URL ?? '', /^sqlite:/);
    assert.equal(s.environment?.COLLOQUY_ENV, 'development');
    for (const key of Object.keys(s.environment ?? {})) assert.ok(key in EnvSchema.properties, key);
  });
});

describe('YAML style', () => {
  it('passes yamllint (compose files and everything under deploy/)', (t) => {
    const yamllint = requireTool(t, 'yamllint');
    if (!yamllint) return;
    const files = [
      'compose.yaml',
      'compose.dev.yaml',
      ...filesUnder(path.join(ROOT, 'deploy'), /\.ya?ml$/),
    ].map((f) => path.relative(ROOT, path.resolve(ROOT, f)));
    assert.ok(files.length > 20);
    const result = run(yamllint, ['-f', 'parsable', '-c', 'deploy/.yamllint.yaml', ...files], { cwd: ROOT });
    assertRan(result, 'yamllint');
  });
});
