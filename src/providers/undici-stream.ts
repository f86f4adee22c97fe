import type { Dispatcher } from 'undici';
import { dispatchTo, errors, parseHeaders, type TextRequest } from './undici.js';

/** What requestStream resolves with: the status, the headers and the body, read as it arrives. */
export interface StreamResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: StreamBody;
}

const ONCE = { once: true } as const;
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };
/** Bytes queued unread before the upstream's socket is paused (undici's Readable pauses at 64 KiB too). */
const HIGH_WATER_MARK = 64 * 1024;

/**
 * A streamed answer (an SSE body) on undici's dispatch handler, its chunks handed straight to the reader.
 * undici's `request()` wraps the body in a Readable stream (plus an AsyncResource and an EventEmitter) whose
 * async iterator takes several ticks per chunk: ~70 µs from the socket's read to the reader on the loaded
 * development machine, on the path of every chunk and of the first token (bench/stream-path.ts).
 * `onResponseHeaders` runs when the headers arrive.
 */
export function requestStream(
  dispatcher: Dispatcher,
  url: URL,
  options: TextRequest,
  onResponseHeaders: () => void,
): Promise<StreamResponse> {
  return new Promise((resolve, reject) =>
    dispatchTo(dispatcher, url, options, new StreamBody(options.signal, onResponseHeaders, resolve, reject)),
  );
}

/**
 * The dispatch handler, the caller's abort listener (`handleEvent`) and the body in one object. The body is
 * what readSse and the error path use of undici's Readable: async iteration (one reader), `text()`,
 * `json()`, `destroy(err)`, `dump({ limit })` and `once('close')`. A signal aborted or `destroy(err)` fails
 * the read waiting, as the Readable's iterator does.
 */
export class StreamBody implements AsyncIterator<Buffer> {
  #response: StreamResponse | undefined;
  readonly #queue: Buffer[] = [];
  #queued = 0;
  #waiting: { resolve: (r: IteratorResult<Buffer>) => void; reject: (err: unknown) => void } | undefined;
  #ended = false;
  #error: unknown;
  #closed = false;
  #onClose: (() => void) | undefined;
  #abortCall: ((reason: Error) => void) | undefined;
  #resume: (() => void) | undefined;
  #paused = false;
  /** Dropping what comes (dump): bytes left before the connection is given up instead. */
  #dumpLeft = -1;
  #dumped: (() => void) | undefined;

  constructor(
    private readonly signal: AbortSignal,
    private readonly onResponseHeaders: () => void,
    private readonly resolve: (response: StreamResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {
    if (signal.aborted) this.handleEvent();
    else signal.addEventListener('abort', this, ONCE);
  }

  /** The caller's signal aborted. */
  handleEvent() {
    this.destroy(this.signal.reason ?? new errors.RequestAbortedError());
  }

  onConnect(abort: (reason: Error) => void) {
    if (this.#error !== undefined) abort(this.#error as Error);
    else this.#abortCall = abort;
  }

  onHeaders(status: number, rawHeaders: Buffer[], resume: () => void) {
    if (status < 200) return true; // 1xx: the real answer follows
    this.#resume = resume;
    this.#response = { statusCode: status, headers: parseHeaders(rawHeaders), body: this };
    this.onResponseHeaders();
    this.resolve(this.#response);
    return true;
  }

  onData(chunk: Buffer) {
    if (this.#error !== undefined) return true;
    if (this.#dumpLeft >= 0) {
      this.#dumpLeft -= chunk.length;
      if (this.#dumpLeft < 0) this.destroy();
      return true;
    }
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      waiting.resolve({ done: false, value: chunk });
      return true;
    }
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    if (this.#queued < HIGH_WATER_MARK) return true;
    this.#paused = true;
    return false;
  }

  onComplete() {
    this.#ended = true;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.resolve(DONE);
    this.#dumped?.();
    this.#close();
  }

  onError(err: Error) {
    if (this.#response === undefined) {
      this.#close();
      this.reject(this.#error === undefined ? err : (this.#error as Error));
      return;
    }
    this.#fail(this.#error ?? err);
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next(): Promise<IteratorResult<Buffer>> {
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#queued -= chunk.length;
      if (this.#paused && this.#queued < HIGH_WATER_MARK) {
        this.#paused = false;
        this.#resume?.();
      }
      return Promise.resolve({ done: false, value: chunk });
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  /** A reader that stops (a `for await` left early) ends the request, as the Readable's iterator does. */
  return(): Promise<IteratorResult<Buffer>> {
    if (!this.#ended) this.destroy();
    return Promise.resolve(DONE);
  }

  async text(): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of this) chunks.push(chunk);
    return Buffer.concat(chunks).toString('utf8');
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  /** Ends the request (the connection is closed); `err` fails the read waiting and those after it. */
  destroy(err?: Error) {
    if (this.#ended || this.#error !== undefined) return;
    const reason = err ?? new errors.RequestAbortedError();
    this.#fail(reason);
    this.#abortCall?.(reason);
  }

  /** Reads and drops the rest (up to `limit` bytes, else destroys): keeps a keep-alive connection usable. */
  dump(options?: { limit?: number }): Promise<void> {
    this.#queue.length = 0;
    this.#queued = 0;
    if (this.#ended || this.#error !== undefined) return Promise.resolve();
    this.#dumpLeft = options?.limit ?? 128 * 1024;
    if (this.#paused) {
      this.#paused = false;
      this.#resume?.();
    }
    return new Promise((resolve) => {
      this.#dumped = resolve;
    });
  }

  /** `once('close', listener)`: the one event callers wait for (the request is over, however it ended). */
  once(event: 'close', listener: () => void) {
    if (event !== 'close') return this;
    if (this.#closed) queueMicrotask(listener);
    else this.#onClose = listener;
    return this;
  }

  #fail(err: unknown) {
    this.#error = err;
    this.#queue.length = 0;
    this.#queued = 0;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(err);
    this.#dumped?.();
    this.#close();
  }

  #close() {
    if (this.#closed) return;
    this.#closed = true;
    this.signal.removeEventListener('abort', this);
    this.#onClose?.();
  }
}
