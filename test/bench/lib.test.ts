import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { floorGrowth, slope } from '../../bench/lib.js';

/**
 * RSS every second: climbs 0.4 MiB/s, gives 40 MiB back over two seconds every 105 s (as a collection and its
 * sweeping do), its floor rising by `leak` MiB/min.
 */
const sawtooth = (seconds: number, leak: number) =>
  Array.from({ length: seconds + 1 }, (_, t) => {
    const inTooth = t % 105;
    const tooth = inTooth === 0 && t > 0 ? 20 : 0.4 * inTooth;
    return { t, rss: 160 + leak * (t / 60) + tooth };
  });

describe('soak growth from RSS floors', () => {
  it('reads a flat-floored sawtooth as no growth, where the whole-window slope depends on where it ends', () => {
    const samples = sawtooth(300, 0);
    assert.ok(Math.abs(floorGrowth(samples) ?? Number.NaN) < 0.01);
    const wholeWindow = slope(
      samples.map((s) => s.t / 60),
      samples.map((s) => s.rss),
    );
    assert.ok(Math.abs(wholeWindow) > 1, `whole-window slope ${wholeWindow}`);
  });

  it('finds a leak under the sawtooth', () => {
    assert.ok(Math.abs((floorGrowth(sawtooth(300, 3)) ?? 0) - 3) < 0.01);
  });

  it('gives no figure without two collections a minute apart', () => {
    assert.equal(floorGrowth(sawtooth(100, 0)), undefined);
    assert.equal(floorGrowth(Array.from({ length: 61 }, (_, i) => ({ t: i * 5, rss: 200 + i }))), undefined);
  });
});
