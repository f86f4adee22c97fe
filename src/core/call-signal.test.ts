import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallController } from './call-signal.js';

/** Bytes promoted to the old generation per signal made (and dropped) in a fresh Node.js process. */
function promotedPerSignal(make: string): number {
  const n = 200_000;
  const module = JSON.stringify(new URL('./call-signal.ts', import.meta.url).href);
  const script = `const { CallController } = await import(${module}); let sink;
    for (let i = 0; i < ${n}; i++) { sink = ${make}; await null; }`;
  const trace = execFileSync(
    process.execPath,
    ['--trace-gc-nvp', '--import', 'tsx', '--input-type=module', '-e', script],
    {
      encoding: 'utf8',
    },
  );
  const promoted = [...trace.matchAll(/gc=s .*?promoted=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  return promoted / n;
}

describe('CallController', () => {
  it('aborts like an AbortController: aborted, reason, listeners, onabort, once only', () => {
    const controller = new CallController();
    const { signal } = controller;
    const seen: string[] = [];
    signal.onabort = () => seen.push('onabort');
    signal.addEventListener('abort', (event) => seen.push(`listener:${event.type}`), { once: true });
    assert.equal(signal.aborted, false);
    signal.throwIfAborted();

    const reason = new Error('client went away');
    controller.abort(reason);
    controller.abort(new Error('second'));
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason, reason);
    assert.throws(() => signal.throwIfAborted(), reason);
    assert.deepEqual(seen, ['onabort', 'listener:abort']);
  });

  it('defaults its reason to an AbortError DOMException', () => {
    const controller = new CallController();
    controller.abort();
    assert.equal((controller.signal.reason as DOMException).name, 'AbortError');
  });

  it("cancels Node's own APIs that take an AbortSignal", async () => {
    const controller = new CallController();
    const pending = sleep(60_000, undefined, { signal: controller.signal });
    controller.abort(new Error('stop'));
    await assert.rejects(pending, { name: 'AbortError' });
  });

  it("dies young where Node's AbortSignal is promoted to the old generation", () => {
    const ours = promotedPerSignal('new CallController().signal');
    const nodes = promotedPerSignal('new AbortController().signal');
    assert.ok(ours < 50, `CallSignal: ${ours.toFixed(0)} B promoted per signal`);
    // Node 20 and 22 promote every AbortSignal (the reason CallController exists); Node 24's die young too
    // (7 B a signal measured), so there the comparison has nothing left to show.
    if (Number(process.versions.node.split('.')[0]) < 24) {
      assert.ok(
        nodes > 5 * Math.max(ours, 20),
        `AbortSignal: ${nodes.toFixed(0)} B, CallSignal ${ours.toFixed(0)} B`,
      );
    }
  });
});
