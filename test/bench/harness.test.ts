import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// The benchmark harness at its smallest size: it must run end to end and write every scenario. No timing
// assertions: CI machines are noisy, the figures only mean something from a real run (`npm run bench`).
describe('benchmark harness (--tiny)', () => {
  // A hang guard, not a speed bound: ~1 minute on an idle machine, over 3 on a loaded 2-core one.
  it('runs every scenario and writes the JSON results', { timeout: 600_000 }, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-bench-test-'));
    const out = path.join(dir, 'results.json');
    try {
      // `npm run bench` builds first; here the build is the test run's business (dist/ must be current).
      const result = spawnSync(
        process.execPath,
        ['--import', 'tsx', 'bench/run.ts', '--tiny', '--out', out],
        {
          cwd: ROOT,
          encoding: 'utf8',
          timeout: 590_000,
        },
      );
      assert.equal(result.status, 0, `bench exited ${result.status}\n${result.stdout}\n${result.stderr}`);
      const doc = JSON.parse(readFileSync(out, 'utf8')) as {
        commit: string;
        node: string;
        cpu: string;
        scenarios: Record<string, unknown>;
        summary: { scenario: number; metric: string; arm: string }[];
      };
      assert.ok(doc.commit && doc.node && doc.cpu);
      for (const s of ['1', '2', '3', '4', '5', '6', '7']) {
        assert.ok(doc.scenarios[s], `scenario ${s} missing from the results`);
        assert.ok(
          doc.summary.some((r) => String(r.scenario) === s),
          `scenario ${s} missing from the summary`,
        );
      }
      // The node-proxy ceiling runs next to Colloquy wherever Colloquy is compared with direct.
      for (const s of [1, 2, 3])
        assert.ok(
          doc.summary.some((r) => r.scenario === s && r.arm === 'node-proxy'),
          `node-proxy missing from scenario ${s}`,
        );
      for (const metric of [
        'colloquy/node-proxy RPS',
        'added p50 vs node-proxy @50',
        'TTFT overhead vs node-proxy p50',
      ])
        assert.ok(
          doc.summary.some((r) => r.metric === metric && r.arm === 'colloquy-sqlite'),
          `${metric} missing from the summary`,
        );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
