import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { memoryStatus } from '../ops/doctor-memory.js';
import { ConfigError, loadConfig } from './load-config.js';
import {
  deriveMemorySettings,
  heapFlagMb,
  memoryLimit,
  parseMemorySize,
  readCgroupLimit,
} from './memory-limit.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-cgroup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A cgroup file with this content (the kernel's format: a number or `max`, and a newline). */
function cgroupFile(name: string, content: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `${content}\n`);
  return file;
}
const missing = path.join(dir, 'absent');
const noLimit = { v2: missing, v1: missing };

describe('MEMORY_LIMIT: parsing', () => {
  it('reads Docker and Kubernetes spellings in binary units', () => {
    assert.equal(parseMemorySize('512m'), 512 * MiB);
    assert.equal(parseMemorySize('512M'), 512 * MiB);
    assert.equal(parseMemorySize('512Mi'), 512 * MiB);
    assert.equal(parseMemorySize('512MiB'), 512 * MiB);
    assert.equal(parseMemorySize('2g'), 2 * GiB);
    assert.equal(parseMemorySize('1.5G'), 1.5 * GiB);
    assert.equal(parseMemorySize('536870912'), 512 * MiB);
    assert.equal(parseMemorySize('64k'), 64 * 1024);
  });

  it('refuses what is not a size', () => {
    for (const bad of ['', 'lots', '0', '-1g', '2 gigabytes', '1e9', 'm'])
      assert.equal(parseMemorySize(bad), undefined, bad);
  });
});

describe('MEMORY_LIMIT: the container limit', () => {
  it('cgroup v2: memory.max in bytes, and `max` is no limit', () => {
    assert.deepEqual(readCgroupLimit({ v2: cgroupFile('v2', '1073741824'), v1: missing }), {
      bytes: GiB,
      source: 'cgroup v2',
    });
    assert.equal(
      readCgroupLimit({ v2: cgroupFile('v2-max', 'max'), v1: cgroupFile('v1', '536870912') }),
      undefined,
    );
  });

  it('cgroup v1: memory.limit_in_bytes, and its page-rounded 2^63 is no limit', () => {
    assert.deepEqual(readCgroupLimit({ v2: missing, v1: cgroupFile('v1-512', '536870912') }), {
      bytes: 512 * MiB,
      source: 'cgroup v1',
    });
    assert.equal(
      readCgroupLimit({ v2: missing, v1: cgroupFile('v1-unlimited', '9223372036854771712') }),
      undefined,
    );
    assert.equal(readCgroupLimit(noLimit), undefined, 'no cgroup files (not Linux, not a container)');
  });

  it('MEMORY_LIMIT overrides what the cgroup says', () => {
    const probe = { v2: cgroupFile('v2-4g', String(4 * GiB)), v1: missing };
    assert.deepEqual(memoryLimit('1g', probe), { bytes: GiB, source: 'MEMORY_LIMIT' });
    assert.deepEqual(memoryLimit(undefined, probe), { bytes: 4 * GiB, source: 'cgroup v2' });
  });
});

describe('MEMORY_LIMIT: what is derived', () => {
  it('a heap of three quarters of each process’s share, shedding at 90 % of it resident or 85 % of the heap', () => {
    const one = deriveMemorySettings({ bytes: 512 * MiB, source: 'MEMORY_LIMIT' }, 1, 4 * GiB);
    assert.equal(one.heapMb, 384);
    assert.equal(one.maxRssBytes, Math.floor(0.9 * 512 * MiB));
    assert.equal(one.maxHeapBytes, Math.floor(0.85 * 384 * MiB), 'the recommended heap, below V8’s 4 GiB');
    const two = deriveMemorySettings({ bytes: 2 * GiB, source: 'cgroup v2' }, 2, 256 * MiB);
    assert.equal(two.heapMb, 768, 'each of two workers gets its share');
    assert.equal(two.maxRssBytes, Math.floor(0.9 * GiB));
    assert.equal(two.maxHeapBytes, Math.floor(0.85 * 256 * MiB), 'V8’s own smaller heap limit wins');
    assert.equal(
      deriveMemorySettings({ bytes: 64 * MiB, source: 'MEMORY_LIMIT' }, 1, GiB).heapMb,
      96,
      'a floor',
    );
  });

  it('finds --max-old-space-size in NODE_OPTIONS or the process flags, the last one winning', () => {
    assert.equal(heapFlagMb('--enable-source-maps --max-old-space-size=384'), 384);
    assert.equal(heapFlagMb('--max-old-space-size=384', ['--max_old_space_size=512']), 512);
    assert.equal(heapFlagMb(undefined, []), undefined);
  });

  const load = (env: Record<string, string>, probe = noLimit) =>
    loadConfig(env, { dotenvDir: null, memoryProbe: probe, heapLimitBytes: 4 * GiB });

  it('loadConfig: the thresholds from the limit, an explicit OVERLOAD_MAX_HEAP_BYTES winning', () => {
    const config = load({ MEMORY_LIMIT: '1g' });
    assert.equal(config.memory?.heapMb, 768);
    assert.equal(config.http.overload.maxRssBytes, Math.floor(0.9 * GiB));
    assert.equal(config.http.overload.maxHeapBytes, Math.floor(0.85 * 768 * MiB));
    assert.equal(load({ MEMORY_LIMIT: '1g', OVERLOAD_MAX_HEAP_BYTES: '0' }).http.overload.maxHeapBytes, 0);
    const fromCgroup = load({ WORKERS: '2' }, { v2: cgroupFile('v2-2g', String(2 * GiB)), v1: missing });
    assert.equal(fromCgroup.memory?.limit.source, 'cgroup v2');
    assert.equal(fromCgroup.memory?.heapMb, 768);
  });

  it('loadConfig: no limit, no memory-based shedding; a bad MEMORY_LIMIT stops serve naming what is expected', () => {
    const config = load({});
    assert.equal(config.memory, undefined);
    assert.equal(config.http.overload.maxRssBytes, 0);
    assert.equal(config.http.overload.maxHeapBytes, 0);
    for (const bad of ['lots', '0']) {
      const err = (() => {
        try {
          load({ MEMORY_LIMIT: bad });
        } catch (e) {
          return e;
        }
      })();
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems.join('\n'), /^MEMORY_LIMIT: expected .*512m/m);
    }
  });

  it('doctor prints what it derived', () => {
    assert.equal(
      memoryStatus(load({ MEMORY_LIMIT: '512m' })).line,
      'memory limit 512 MiB (MEMORY_LIMIT): 503 past 326 MiB heap or 461 MiB resident; recommended --max-old-space-size=384',
    );
    assert.match(memoryStatus(load({})).line, /^memory limit: none found/);
  });
});
