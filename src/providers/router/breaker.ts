import { BrokenCircuitError, CircuitState } from 'cockatiel';

/**
 * A deployment's circuit breaker, with the semantics of cockatiel's `circuitBreaker(handleWhen(counts),
 * { halfOpenAfter: cooldownMs, breaker: new ConsecutiveBreaker(failures) })`, which it replaces (issue 26):
 * `execute` + the executor's `invoke` cost two async frames, a rest array and a result object on every attempt
 * (~0.9 KiB of the ~34.7 KiB a non-streaming request allocated, measured with bench/run.ts --baseline). Here a closed breaker is asked `closed` and told
 * the outcome (`succeeded()` / `failed(err)`) by the caller, who runs the call itself; `execute` is only for
 * the other states, where it behaves as cockatiel's:
 *
 * - closed: a failure that counts (`counts(err)`) adds one to the consecutive failures, a success resets them;
 *   at `failures` in a row it opens. An error that does not count changes nothing.
 * - open: every call is refused with BrokenCircuitError until `cooldownMs` have passed since it opened; the
 *   first call after that is the half-open probe.
 * - half-open: other calls wait for the probe, then go again (closed: they run; open: refused). The probe's
 *   success closes it; a failure that counts opens it again for another cooldown; an error that does not
 *   count closes it.
 *
 * `state` is cockatiel's CircuitState (read by the health views and the breaker-state metric).
 */
export class DeploymentBreaker {
  #state: CircuitState = CircuitState.Closed;
  #failuresInARow = 0;
  #openedAt = 0;
  #probe: Promise<unknown> | undefined;

  constructor(
    readonly failures: number,
    readonly cooldownMs: number,
    readonly counts: (err: unknown) => boolean,
  ) {}

  get state(): CircuitState {
    return this.#state;
  }

  /** Closed: the caller may run the call itself, then report it with succeeded() or failed(err). */
  get closed(): boolean {
    return this.#state === CircuitState.Closed;
  }

  /** A call made while closed succeeded. */
  succeeded(): void {
    this.#failuresInARow = 0;
  }

  /** A call made while closed failed with `err`. */
  failed(err: unknown): void {
    if (this.counts(err) && ++this.#failuresInARow >= this.failures) this.#open();
  }

  /** Runs `call` through the breaker, whatever its state (the hot path uses `closed` instead). */
  async execute<T>(call: () => Promise<T>): Promise<T> {
    switch (this.#state) {
      case CircuitState.Closed: {
        let value: T;
        try {
          value = await call();
        } catch (err) {
          this.failed(err);
          throw err;
        }
        this.succeeded();
        return value;
      }
      case CircuitState.HalfOpen:
        await (this.#probe as Promise<unknown>).catch(() => undefined);
        return this.execute(call);
      default: {
        if (Date.now() - this.#openedAt < this.cooldownMs) throw new BrokenCircuitError();
        const probe = this.#halfOpen(call);
        this.#state = CircuitState.HalfOpen;
        this.#probe = probe;
        return probe;
      }
    }
  }

  async #halfOpen<T>(call: () => Promise<T>): Promise<T> {
    let value: T;
    try {
      value = await call();
    } catch (err) {
      if (this.counts(err)) {
        this.#failuresInARow++;
        this.#open();
      } else this.#close();
      throw err;
    }
    this.#failuresInARow = 0;
    this.#close();
    return value;
  }

  #open(): void {
    if (this.#state === CircuitState.Open) return;
    this.#state = CircuitState.Open;
    this.#openedAt = Date.now();
    this.#probe = undefined;
  }

  #close(): void {
    if (this.#state !== CircuitState.HalfOpen) return;
    this.#state = CircuitState.Closed;
    this.#probe = undefined;
  }
}
