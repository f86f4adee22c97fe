import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deriveMemorySettings, heapFlagMb, parseMemorySize } from '../../src/config/memory-limit.js';
import { read, readYaml } from './helpers.js';

/**
 * The small-host profile (deploy/compose/small-host.yaml) over compose.yaml, merged the way `docker compose -f
 * compose.yaml -f deploy/compose/small-host.yaml` merges them (maps merged key by key, sequences and scalars
 * of the override replacing the base's): every service capped, the caps adding up to less than 4 GiB and to
 * the total the file documents, and each program sized inside its cap.
 */
type Service = {
  command?: string[];
  environment?: Record<string, string>;
  deploy?: { resources?: { limits?: { memory?: string } } };
  depends_on?: Record<string, { condition: string }>;
};
type Compose = { services: Record<string, Service> };

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
function merge(base: unknown, override: unknown): unknown {
  if (!isMap(base) || !isMap(override)) return override === undefined ? base : override;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(override)) out[k] = merge(base[k], v);
  return out;
}

const base = readYaml<Compose>('compose.yaml');
const small = readYaml<Compose>('deploy/compose/small-host.yaml');
const merged = merge(base, small) as Compose;
const services = merged.services;
const MiB = 1024 * 1024;
const limitOf = (name: string) => {
  const text = services[name]?.deploy?.resources?.limits?.memory;
  assert.ok(text, `${name} has a memory limit`);
  const bytes = parseMemorySize(text);
  assert.ok(bytes, `${name}: ${text} is a size`);
  return bytes;
};
/** The value after a flag in a command list (`--maxmemory 96mb`, `-c shared_buffers=128MB`). */
const flag = (command: string[] | undefined, name: string) => {
  const i = (command ?? []).indexOf(name);
  return i < 0 ? undefined : command![i + 1];
};
const setting = (command: string[] | undefined, name: string) =>
  (command ?? []).find((c) => c.startsWith(`${name}=`))?.split('=')[1];

describe('small-host profile (deploy/compose/small-host.yaml)', () => {
  it('caps every service, the caps adding up to less than 4 GiB and to the total the file documents', () => {
    const names = Object.keys(services);
    assert.ok(names.length >= 10, 'the whole stack, plus redis-cache');
    for (const name of Object.keys(base.services)) assert.ok(names.includes(name));
    const total = names.reduce((sum, name) => sum + limitOf(name), 0);
    assert.ok(total < 4 * 1024 * MiB, `the limits add up to ${total / MiB} MiB`);
    const documented = /: ([\d,]+) MiB in all/.exec(read('deploy/compose/small-host.yaml'))?.[1];
    assert.equal(Number(documented?.replace(',', '')), total / MiB, 'the documented total is the real one');
  });

  it('PostgreSQL: shared_buffers and connections sized inside its cap', () => {
    const pg = services.postgres!;
    const buffers = parseMemorySize(setting(pg.command, 'shared_buffers') ?? '');
    assert.ok(buffers && buffers <= limitOf('postgres') / 4, 'shared_buffers at most a quarter of the cap');
    const maxConnections = Number(setting(pg.command, 'max_connections'));
    const replicas = Object.keys(services).filter((s) => /^colloquy-\d+$/.test(s));
    const pools = replicas.reduce((n, r) => n + Number(services[r]!.environment?.DB_POOL_SIZE ?? 10), 0);
    assert.ok(
      maxConnections > pools,
      `${maxConnections} connections hold the replicas' pools (${pools}) and tools`,
    );
  });

  it('Redis: state never evicted (noeviction), the cache on its own Redis evicting least recently used', () => {
    const state = services.redis!;
    assert.equal(flag(state.command, '--maxmemory-policy'), 'noeviction');
    assert.ok(parseMemorySize(flag(state.command, '--maxmemory') ?? '')! < limitOf('redis'));
    assert.equal(flag(state.command, '--appendonly'), 'yes', 'limits and budgets survive a restart');
    const cache = services['redis-cache']!;
    assert.equal(flag(cache.command, '--maxmemory-policy'), 'allkeys-lru');
    assert.ok(parseMemorySize(flag(cache.command, '--maxmemory') ?? '')! < limitOf('redis-cache'));
    for (const replica of ['colloquy-1', 'colloquy-2', 'colloquy-3']) {
      const env = services[replica]!.environment!;
      assert.match(env.CACHE_REDIS_URL ?? '', /@redis-cache:6379\//, `${replica} caches on redis-cache`);
      assert.match(env.REDIS_URL ?? '', /@redis:6379\//, `${replica} keeps its state on redis`);
      assert.equal(services[replica]!.depends_on?.['redis-cache']?.condition, 'service_healthy');
      assert.equal(services[replica]!.depends_on?.redis?.condition, 'service_healthy', 'the base’s kept');
    }
  });

  it('Prometheus: 30 s scrapes, a retention in time and size; its config is prometheus.yml but for that', () => {
    const command = services.prometheus!.command!;
    assert.ok(command.includes('--config.file=/etc/prometheus/prometheus.small-host.yml'));
    assert.ok(
      command.some((c) => /^--storage\.tsdb\.retention\.time=\$\{PROMETHEUS_RETENTION:-7d\}$/.test(c)),
    );
    assert.ok(command.includes('--storage.tsdb.retention.size=1GB'));
    const strip = (text: string) =>
      text
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n')
        .replace(/ {2}(scrape|evaluation)_interval: \d+s\n/g, '');
    const smallConfig = read('deploy/prometheus/prometheus.small-host.yml');
    assert.match(smallConfig, /^ {2}scrape_interval: 30s$/m);
    assert.match(smallConfig, /^ {2}evaluation_interval: 30s$/m);
    assert.equal(strip(smallConfig), strip(read('deploy/prometheus/prometheus.yml')));
  });

  it('Colloquy: a V8 heap no larger than what it derives from its own cap (doctor would not warn)', () => {
    for (const name of ['colloquy-1', 'colloquy-2', 'colloquy-3', 'migrate']) {
      const heap = heapFlagMb(services[name]!.environment?.NODE_OPTIONS);
      assert.ok(heap, `${name} sets --max-old-space-size`);
      const derived = deriveMemorySettings({ bytes: limitOf(name), source: 'cgroup v2' }, 1, heap * MiB);
      assert.ok(heap <= derived.heapMb, `${name}: ${heap} MiB heap within the ${derived.heapMb} MiB derived`);
    }
  });

  it('every variable it reads is documented', () => {
    const documented = `${read('.env.example')}\n${read('deploy/compose.env.example')}`;
    const used = [...read('deploy/compose/small-host.yaml').matchAll(/\$\{([A-Z_]+)/g)].map((m) => m[1]!);
    for (const name of new Set(used)) assert.match(documented, new RegExp(`^#? ?${name}=`, 'm'), name);
  });
});
