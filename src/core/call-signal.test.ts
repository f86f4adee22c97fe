import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
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

const bound = (controller: CallController) => ({
  signal: controller.signal,
  abort: () => controller.abort(),
});

describe('CallController', () => {
  it('aborts like an AbortController: aborted, reason, listeners, onabort, once only', () => {
    const controller = new CallController();
    const { signal } = controller;
    const seen: string[] = [];
    signal.onabort = () => seen.push('onabort');
    signal.addEventListener('abort', (event: Event) => seen.push(`listener:${event.type}`), { once: true });
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

  it('calls each listener once in the order added, functions with the signal as this, objects by handleEvent', () => {
    const { signal, abort } = bound(new CallController());
    const seen: unknown[] = [];
    const fn = function (this: unknown, event: Event) {
      seen.push(['fn', this === signal, event.type]);
    };
    const handler = {
      handleEvent(event: Event) {
        seen.push(['object', this === handler, event.type]);
      },
    };
    signal.addEventListener('abort', fn);
    signal.addEventListener('abort', fn, { once: true }); // already there: not added again
    signal.addEventListener('abort', handler, { once: true });
    signal.addEventListener('abort', () => seen.push('third'));
    signal.addEventListener('other', () => seen.push('never'));
    signal.addEventListener('abort', null);
    abort();
    assert.deepEqual(seen, [['fn', true, 'abort'], ['object', true, 'abort'], 'third']);
  });

  it('skips a listener removed before the abort, or by another listener during it; calls one added during it', () => {
    const { signal, abort } = bound(new CallController());
    const seen: string[] = [];
    const removedEarly = () => seen.push('removed early');
    const removedDuring = () => seen.push('removed during');
    const handler = { handleEvent: () => seen.push('object removed') };
    signal.addEventListener('abort', removedEarly, { once: true });
    signal.addEventListener('abort', () => {
      seen.push('first');
      signal.removeEventListener('abort', removedDuring);
      signal.addEventListener('abort', () => seen.push('added during'));
    });
    signal.addEventListener('abort', handler);
    signal.addEventListener('abort', removedDuring);
    signal.addEventListener('abort', () => seen.push('last'));
    signal.removeEventListener('abort', removedEarly);
    signal.removeEventListener('abort', handler);
    abort();
    assert.deepEqual(seen, ['first', 'last', 'added during']);
  });

  it("calls a listener added during the abort as Node's EventTarget does: unless the last one added it", () => {
    for (const count of [1, 2]) {
      const { signal, abort } = bound(new CallController());
      const seen: string[] = [];
      for (let i = 1; i < count; i++) signal.addEventListener('abort', () => seen.push(`listener ${i}`));
      signal.addEventListener('abort', () => {
        seen.push('last');
        signal.addEventListener('abort', () => seen.push('added by the last'));
      });
      abort();
      assert.deepEqual(seen, [...(count > 1 ? ['listener 1'] : []), 'last']);
    }
  });

  it('keeps the order of listeners added after the first was removed', () => {
    const { signal, abort } = bound(new CallController());
    const seen: string[] = [];
    const a = () => seen.push('a');
    signal.addEventListener('abort', a);
    signal.addEventListener('abort', () => seen.push('b'));
    signal.removeEventListener('abort', a);
    signal.addEventListener('abort', () => seen.push('c'));
    signal.addEventListener('abort', a);
    abort();
    assert.deepEqual(seen, ['b', 'c', 'a']);
  });

  it('reports a throwing or rejecting listener as uncaught and still calls the others', () => {
    const module = JSON.stringify(new URL('./call-signal.ts', import.meta.url).href);
    const script = `const { CallController } = await import(${module});
      process.on('uncaughtException', (err) => console.log('uncaught', err.message));
      const c = new CallController();
      c.signal.addEventListener('abort', () => { throw new Error('sync'); });
      c.signal.addEventListener('abort', async () => { throw new Error('async'); });
      c.signal.addEventListener('abort', () => console.log('third'));
      c.abort();
      console.log('after abort');`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    assert.deepEqual(out.trim().split('\n'), ['third', 'after abort', 'uncaught sync', 'uncaught async']);
  });

  it("cancels Node's events helpers and undici's request()", async () => {
    const first = new CallController();
    const waiting = once(new EventEmitter(), 'never', { signal: first.signal });
    first.abort(new Error('stop'));
    await assert.rejects(waiting, { name: 'AbortError' });

    const server = createServer(() => {}); // never answers
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const second = new CallController();
      const pending = request(`http://127.0.0.1:${port}/`, { signal: second.signal });
      await sleep(20);
      const reason = new Error('client went away');
      second.abort(reason);
      await assert.rejects(pending, (err) => err === reason);
      // A signal already aborted: undici does not send the request.
      await assert.rejects(
        request(`http://127.0.0.1:${port}/`, { signal: second.signal }),
        (err) => err === reason,
      );
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
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
