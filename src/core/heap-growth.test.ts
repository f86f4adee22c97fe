import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { adaptHeapGrowth, growingPercentFor } from './heap-growth.js';

const MiB = 2 ** 20;

describe('heap growth', () => {
  it('gives a small heap 100 % of room, a large one 64 MiB (at least 25 %)', () => {
    assert.equal(growingPercentFor(0), 100);
    assert.equal(growingPercentFor(40 * MiB), 100);
    assert.equal(growingPercentFor(64 * MiB), 100);
    assert.equal(growingPercentFor(80 * MiB), 80);
    assert.equal(growingPercentFor(128 * MiB), 50);
    assert.equal(growingPercentFor(256 * MiB), 25);
    assert.equal(growingPercentFor(1024 * MiB), 25);
  });

  it('lowers the growing percentage after a mark-compact finds a large live heap, and raises it again', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    // Room for a little more than this process already holds: 100 % until its live heap grows.
    const headroomBytes = 1.25 * getHeapStatistics().used_heap_size;
    const flags: string[] = [];
    const stop = adaptHeapGrowth({ headroomBytes, minPercent: 25, maxPercent: 100 }, (f) => flags.push(f));
    try {
      assert.deepEqual(flags, ['--heap-growing-percent=100']);
      let live: { i: number }[] | undefined = Array.from({ length: 4_000_000 }, (_, i) => ({ i }));
      gc();
      await sleep(50);
      const lowered = Number(/=(\d+)$/.exec(flags.at(-1) ?? '')?.[1]);
      assert.ok(
        lowered >= 25 && lowered <= 50,
        `${flags.at(-1)} with ${getHeapStatistics().used_heap_size} B live`,
      );
      assert.equal(live.length, 4_000_000);
      live = undefined;
      gc();
      await sleep(50);
      assert.equal(flags.at(-1), '--heap-growing-percent=100');
    } finally {
      stop();
    }
  });
});
