/**
 * AbortController for the per-request hot path (a call's client-gone signal, its deadline, each attempt).
 *
 * Node builds every AbortSignal by giving an EventTarget a new prototype and then adding properties, and V8
 * promotes each object shaped that way to the old generation (~400 B a signal, `--trace-gc-nvp`): the two
 * signals of a non-streaming request were ~70 % of all it promoted, and the old generation's mark-compacts
 * are what stalls the slowest 1 % of requests at 1,000 RPS.
 *
 * Nor is it an EventTarget (issue 26): Node's EventTarget makes two SafeMaps for every instance and a listener
 * record per listener (~1.4 KiB a request for the two signals of a call). A signal is only ever listened to for
 * its one 'abort', mostly by one listener, so it keeps that listener in a field and any others in an array.
 * Every API the code hands it to takes an AbortSignal by duck typing (`aborted`, `reason`,
 * `addEventListener('abort', fn, { once })`, `removeEventListener`): Node's timers and `events` helpers, undici's
 * `request()`/`dispatch` and our own dispatch handlers. AbortSignal.any() needs Node's own signals: do not pass
 * it one of these.
 *
 * As an EventTarget: a listener (function, or object with `handleEvent`) is added once however often it is
 * added; `once` listeners are removed before they run; one removed while the abort is being dispatched is not
 * called; one added during it is called as Node's would be (see #dispatch); one that throws or rejects does
 * not stop the others and is reported as an uncaught exception. `capture`, `passive` and the `signal` option
 * are ignored (no caller uses them on an abort signal), and so are listeners of other event types: only
 * 'abort' is ever dispatched.
 */
type Listener = Parameters<EventTarget['addEventListener']>[1];
type ListenerOptions = Parameters<EventTarget['addEventListener']>[2];

interface ListenerRecord {
  readonly listener: Listener;
  readonly once: boolean;
  removed: boolean;
}

const rethrow = (err: unknown) =>
  process.nextTick(() => {
    throw err;
  });

export class CallSignal implements AbortSignal {
  #aborted = false;
  #reason: unknown = undefined;
  /** The first listener, kept in fields: most signals never have another. */
  #first: Listener | undefined = undefined;
  #firstOnce = false;
  /** Listeners added while the first field was taken, in order (never the first field again while any is left). */
  #rest: ListenerRecord[] | undefined = undefined;
  #dispatching = false;
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

  addEventListener(type: string, listener: Listener | null, options?: ListenerOptions): void {
    if (listener === null || listener === undefined) return;
    if (typeof listener !== 'function' && typeof listener !== 'object') {
      throw new TypeError('The "listener" argument must be a function or an object with handleEvent');
    }
    if (type !== 'abort' || this.#has(listener)) return;
    const once = typeof options === 'object' && options !== null && options.once === true;
    const rest = this.#rest;
    if (this.#first === undefined && (rest === undefined || rest.length === 0)) {
      this.#first = listener;
      this.#firstOnce = once;
    } else if (rest === undefined) this.#rest = [{ listener, once, removed: false }];
    else rest.push({ listener, once, removed: false });
  }

  removeEventListener(
    type: string,
    listener: Listener | null,
    _options?: boolean | EventListenerOptions,
  ): void {
    if (type !== 'abort' || listener === null || listener === undefined) return;
    if (this.#first === listener) {
      this.#first = undefined;
      return;
    }
    const rest = this.#rest;
    if (rest === undefined) return;
    for (let i = 0; i < rest.length; i++) {
      const record = rest[i]!;
      if (record.listener === listener && !record.removed) {
        record.removed = true;
        // While the abort is dispatched the list is walked by index: it is compacted after.
        if (!this.#dispatching) rest.splice(i, 1);
        return;
      }
    }
  }

  /** Calls the 'abort' listeners with `event` (an abort itself is CallController's). */
  dispatchEvent(event: Event): boolean {
    if (event.type === 'abort') this.#dispatch(event);
    return !event.defaultPrevented;
  }

  #has(listener: Listener): boolean {
    if (this.#first === listener) return true;
    const rest = this.#rest;
    if (rest === undefined) return false;
    for (const record of rest) if (record.listener === listener && !record.removed) return true;
    return false;
  }

  /**
   * Node's EventTarget walks its list reading each listener's successor before calling it: one added during
   * the dispatch is called, unless it was added by the listener that was then the last one. The same here.
   */
  #dispatch(event: Event): void {
    const first = this.#first;
    const rest = this.#rest;
    const more = rest !== undefined && rest.length > 0;
    if (first !== undefined) {
      if (this.#firstOnce) this.#first = undefined;
      this.#call(first, event);
    }
    if (!more || this.#dispatching) return;
    this.#dispatching = true;
    for (let i = 0; i < rest.length; i++) {
      const record = rest[i]!;
      const last = i + 1 === rest.length;
      if (!record.removed) {
        if (record.once) record.removed = true;
        this.#call(record.listener, event);
      }
      if (last) break;
    }
    this.#dispatching = false;
    let kept = 0;
    for (const record of rest) if (!record.removed) rest[kept++] = record;
    rest.length = kept;
  }

  #call(listener: Listener, event: Event): void {
    try {
      let result: unknown;
      if (typeof listener === 'function') result = listener.call(this, event);
      else if (typeof listener.handleEvent === 'function') result = listener.handleEvent(event);
      if (
        result !== null &&
        typeof result === 'object' &&
        typeof (result as Promise<unknown>).then === 'function'
      ) {
        (result as Promise<unknown>).then(undefined, rethrow);
      }
    } catch (err) {
      rethrow(err);
    }
  }

  /** @internal CallController's */
  static abort(signal: CallSignal, reason: unknown): void {
    if (signal.#aborted) return;
    signal.#aborted = true;
    signal.#reason = reason;
    const event = new Event('abort');
    signal.onabort?.call(signal, event);
    signal.#dispatch(event);
  }
}

export class CallController {
  readonly signal = new CallSignal();

  abort(reason: unknown = new DOMException('This operation was aborted', 'AbortError')): void {
    CallSignal.abort(this.signal, reason);
  }
}
