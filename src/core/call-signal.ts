/**
 * AbortController for the per-request hot path (a call's client-gone signal, its deadline, each attempt).
 *
 * Node builds every AbortSignal by giving an EventTarget a new prototype and then adding properties, and V8
 * promotes each object shaped that way to the old generation (~400 B a signal, `--trace-gc-nvp`): the two
 * signals of a non-streaming request were ~70 % of all it promoted, and the old generation's mark-compacts
 * are what stalls the slowest 1 % of requests at 1,000 RPS. A plain subclass of EventTarget dies young and
 * works wherever an AbortSignal is taken by duck typing: Node's timers and EventTarget listeners, undici,
 * fetch. AbortSignal.any() needs Node's own signals: do not pass it one of these.
 */
export class CallSignal extends EventTarget implements AbortSignal {
  #aborted = false;
  #reason: unknown = undefined;
  onabort: ((this: AbortSignal, event: Event) => unknown) | null = null;

  get aborted(): boolean {
    return this.#aborted;
  }

  // biome-ignore lint/suspicious/noExplicitAny: AbortSignal's own type for the reason
  get reason(): any {
    return this.#reason;
  }

  throwIfAborted(): void {
    if (this.#aborted) throw this.#reason;
  }

  /** @internal CallController's */
  static abort(signal: CallSignal, reason: unknown): void {
    if (signal.#aborted) return;
    signal.#aborted = true;
    signal.#reason = reason;
    const event = new Event('abort');
    signal.onabort?.call(signal, event);
    signal.dispatchEvent(event);
  }
}

export class CallController {
  readonly signal = new CallSignal();

  abort(reason: unknown = new DOMException('This operation was aborted', 'AbortError')): void {
    CallSignal.abort(this.signal, reason);
  }
}
