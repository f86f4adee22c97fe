import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EnvSchema } from '../../src/config/schema.js';
import { DEPLOY, envDefault, read, requireTool, run } from './helpers.js';

const unit = read('deploy/systemd/colloquy.service');

/** `Key=value` lines of the unit (the last one wins, as in systemd, for single-valued keys). */
function directives(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^(\w+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}
const one = (key: string) => directives().get(key)?.at(-1);
const seconds = (value: string | undefined) => Number(/^(\d+)s?$/.exec(value ?? '')?.[1]);

describe('systemd unit (deploy/systemd)', () => {
  it('passes `systemd-analyze verify` without a warning', (t) => {
    const analyze = requireTool(t, 'systemd-analyze', 'systemd');
    if (!analyze) return;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-systemd-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'colloquy.service');
    copyFileSync(path.join(DEPLOY, 'systemd', 'colloquy.service'), file);
    const result = run(analyze, ['verify', '--man=no', file]);
    // verify exits 0 on unknown or unparsable values and only prints them: any line about the unit fails.
    const complaints = `${result.stdout}\n${result.stderr}`
      .split('\n')
      .filter((l) => l.includes('colloquy.service'));
    assert.deepEqual(complaints, []);
    assert.equal(result.code, 0, result.stderr);
  });

  it('serves with node dist/main.js, checks with doctor first, stops with SIGTERM and enough time to drain', () => {
    assert.match(one('ExecStart') ?? '', /node \/opt\/colloquy\/dist\/main\.js serve$/);
    assert.match(one('ExecStartPre') ?? '', /dist\/main\.js doctor$/);
    assert.equal(one('KillSignal'), 'SIGTERM');
    const drain = Number(envDefault('SHUTDOWN_TIMEOUT'));
    assert.ok(
      seconds(one('TimeoutStopSec')) > drain,
      `TimeoutStopSec ${one('TimeoutStopSec')} > SHUTDOWN_TIMEOUT ${drain}s`,
    );
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('EnvironmentFile'), '/etc/colloquy/colloquy.env');
    assert.notEqual(one('User'), 'root');
  });

  it('is hardened, without the option that breaks V8 (MemoryDenyWriteExecute)', () => {
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['ProtectKernelTunables', 'yes'],
      ['ProtectControlGroups', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
      ['LockPersonality', 'yes'],
      ['CapabilityBoundingSet', ''],
    ]) {
      assert.equal(one(key!), value, `${key}=${value}`);
    }
    assert.match(one('RestrictAddressFamilies') ?? '', /AF_INET6/);
    assert.equal(directives().has('MemoryDenyWriteExecute'), false);
    assert.equal(one('StateDirectory'), 'colloquy', 'a writable state directory under ProtectSystem=strict');
  });

  it('its environment example holds Colloquy variables only', () => {
    const example = read('deploy/systemd/colloquy.env.example');
    const keys = [...example.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);
    assert.ok(keys.includes('SECRET_KEY') && keys.includes('DATABASE_URL'));
    for (const key of keys) assert.ok(key in EnvSchema.properties, `${key} is a Colloquy variable`);
  });
});
