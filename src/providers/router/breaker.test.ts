import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import { DeploymentBreaker } from './breaker.js';

class Counted extends Error {}
class NotCounted extends Error {}
const counts = (err: unknown) => err instanceof Counted;
const COOLDOWN_MS = 40;

type Outcome = 'ok' | 'counted' | 'not-counted';

/** The same calls through cockatiel's breaker and ours (both its execute() and the gateway's closed path). */
function breakers() {
  const cockatiel = circuitBreaker(handleWhen(counts), {
    halfOpenAfter: COOLDOWN_MS,
    breaker: new ConsecutiveBreaker(3),
  });
  const ours = new DeploymentBreaker(3, COOLDOWN_MS, counts);
  const oursClosedPath = new DeploymentBreaker(3, COOLDOWN_MS, counts);
  return [
    {
      name: 'cockatiel',
      state: () => cockatiel.state,
      call: (fn: () => Promise<string>) => cockatiel.execute(fn),
    },
    { name: 'execute', state: () => ours.state, call: (fn: () => Promise<string>) => ours.execute(fn) },
    {
      name: 'closed path',
      state: () => oursClosedPath.state,
      // As the gateway calls it: a closed breaker is only told the outcome.
      call: async (fn: () => Promise<string>) => {
        if (!oursClosedPath.closed) return oursClosedPath.execute(fn);
        let value: string;
        try {
          value = await fn();
        } catch (err) {
          oursClosedPath.failed(err);
          throw err;
        }
        oursClosedPath.succeeded();
        return value;
      },
    },
  ];
}

const task =
  (outcome: Outcome, ms = 0) =>
  async () => {
    if (ms) await sleep(ms);
    if (outcome === 'counted') throw new Counted(outcome);
    if (outcome === 'not-counted') throw new NotCounted(outcome);
    return outcome;
  };

const settle = (promise: Promise<string>) =>
  promise.then(
    (value) => value,
    (err: Error) => err.constructor.name,
  );

describe('DeploymentBreaker', () => {
  it("behaves as cockatiel's consecutive breaker: opens, refuses, probes once, waits for the probe, reopens", async () => {
    const seen = new Map<string, unknown[]>();
    await Promise.all(
      breakers().map(async ({ name, state, call }) => {
        const log: unknown[] = [];
        const step = async (outcome: Outcome) => log.push(await settle(call(task(outcome))), state());
        // Two counted failures, a success (resets), an error that does not count: still closed.
        for (const outcome of ['counted', 'counted', 'ok', 'counted', 'not-counted', 'counted'] as const)
          await step(outcome);
        await step('counted'); // third in a row (the one that did not count changed nothing): open
        await step('ok'); // refused without a call
        await sleep(COOLDOWN_MS + 10);
        // The probe fails: open again for another cooldown.
        await step('counted');
        await step('ok');
        await sleep(COOLDOWN_MS + 10);
        // A slow probe: a call meanwhile waits for it, then runs closed.
        const probe = settle(call(task('ok', 20)));
        log.push(state());
        const waiting = settle(call(task('ok')));
        log.push(await probe, await waiting, state());
        // Open again, and a probe failing with an error that does not count: closed.
        for (let i = 0; i < 3; i++) await step('counted');
        await sleep(COOLDOWN_MS + 10);
        await step('not-counted');
        // A slow probe that fails: the waiting call is refused.
        for (let i = 0; i < 3; i++) await step('counted');
        await sleep(COOLDOWN_MS + 10);
        const failing = settle(call(task('counted', 20)));
        const refused = settle(call(task('ok')));
        log.push(await failing, await refused, state());
        seen.set(name, log);
      }),
    );
    const expected = seen.get('cockatiel');
    assert.ok(expected?.includes(CircuitState.HalfOpen));
    assert.deepEqual(seen.get('execute'), expected);
    assert.deepEqual(seen.get('closed path'), expected);
  });
});
