import { CallController } from '../core/call-signal.js';

/**
 * The deadlines of one upstream attempt, lent by the gateway to the provider (CallOptions.deadline): it aborts
 * the call's one signal with a reason, and bounds the wait for the response headers on the call's one timer.
 */
export interface LentDeadline {
  abort(reason: unknown): void;
  /** The response headers must come within `ms`, else the call is aborted with `reason()`. */
  headersWithin(ms: number, reason: () => unknown): void;
  /** They came: only the whole call's deadline is left (a property: it is passed as a callback). */
  readonly headersCame: () => void;
}

const totalTimeout = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError');

/**
 * One attempt's signal with its whole-call deadline and the provider's headers deadline on ONE timer (issue
 * 26: one timer per request). The timer is armed once, for the earlier of the whole call's end and `firstCheckMs`
 * (the first-token timeout: every provider's headers deadline is that or later). A non-streaming call ends
 * long before either, and `release()` clears the timer that was never re-armed. When it fires, it aborts with
 * the reason of whichever deadline has passed, or is armed again for the next one (a stream past its headers,
 * or headers asked for later than the first check): that costs a second timer only to calls that last that long.
 *
 * Deadlines are read on Date.now(); Node's timers run on the event loop's clock, which may lag it by a
 * millisecond, so a timer may fire just before the deadline it was armed for: it is then armed again for
 * what is left, never fired early.
 */
export class CallDeadline implements LentDeadline {
  readonly #controller = new CallController();
  readonly signal: AbortSignal = this.#controller.signal;
  readonly #parent: AbortSignal | undefined;
  readonly #endsAt: number;
  #headersAt = Number.POSITIVE_INFINITY;
  #headersReason: (() => unknown) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Date.now() scale). */
  #dueAt: number;
  readonly #forward = () => {
    this.#stop();
    this.#controller.abort(this.#parent?.reason);
  };
  readonly #fire = () => {
    this.#timer = undefined;
    const now = Date.now();
    if (now >= this.#headersAt) return this.abort((this.#headersReason as () => unknown)());
    if (now >= this.#endsAt) return this.abort(totalTimeout());
    this.#arm(Math.min(this.#headersAt, this.#endsAt), now);
  };

  /** `endsAt`: the whole call's deadline (Date.now() scale); `now`: Date.now(), already read by the caller. */
  constructor(parent: AbortSignal | undefined, endsAt: number, now: number, firstCheckMs: number) {
    this.#parent = parent;
    this.#endsAt = endsAt;
    this.#dueAt = Number.POSITIVE_INFINITY;
    if (parent?.aborted) {
      this.#controller.abort(parent.reason);
      return;
    }
    parent?.addEventListener('abort', this.#forward, { once: true });
    this.#arm(Math.min(endsAt, now + Math.max(1, firstCheckMs)), now);
  }

  #arm(at: number, now: number) {
    clearTimeout(this.#timer);
    this.#dueAt = at;
    this.#timer = setTimeout(this.#fire, Math.max(1, at - now));
    this.#timer.unref();
  }

  #stop() {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  abort(reason: unknown): void {
    this.#stop();
    this.#parent?.removeEventListener('abort', this.#forward);
    this.#controller.abort(reason);
  }

  headersWithin(ms: number, reason: () => unknown): void {
    if (this.signal.aborted) return;
    const now = Date.now();
    this.#headersAt = now + ms;
    this.#headersReason = reason;
    // Only a headers deadline earlier than the armed check needs the timer moved (no provider asks for one).
    if (this.#headersAt < this.#dueAt) this.#arm(this.#headersAt, now);
  }

  readonly headersCame = (): void => {
    this.#headersAt = Number.POSITIVE_INFINITY;
  };

  /** The attempt is over (a stream: when it ends): no timer or listener outlives it. */
  readonly release = (): void => {
    this.#stop();
    this.#parent?.removeEventListener('abort', this.#forward);
  };
}
