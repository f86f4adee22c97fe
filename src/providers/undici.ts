import { createRequire } from 'node:module';
import type { Dispatcher, Agent as UndiciAgent, errors as UndiciErrors } from 'undici';

/*
 * undici's index loads everything it offers (fetch, WebSocket, EventSource, caches, mocks, proxies): ~3 MiB of
 * heap held by every process for its whole life. Colloquy uses three parts, so it loads only their files; the
 * types still come from the package's own declarations.
 */
const require = createRequire(import.meta.url);
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
export const errors = require('undici/lib/core/errors.js') as typeof UndiciErrors;
const dispatchRequest = require('undici/lib/api/api-request.js') as (
  this: Dispatcher,
  options: Dispatcher.RequestOptions,
) => Promise<Dispatcher.ResponseData>;

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path'>;

/** undici's `request()` on a given dispatcher, for a URL parsed once by the caller. */
export function request(dispatcher: Dispatcher, url: URL, options: RequestOptions) {
  return dispatchRequest.call(dispatcher, {
    ...options,
    origin: url.origin,
    path: url.pathname + url.search,
  });
}

export const { parseHeaders } = require('undici/lib/core/util.js') as {
  parseHeaders(raw: Buffer[]): Record<string, string | string[] | undefined>;
};

/** What requestText sends: one POST or GET with its whole body. */
export interface TextRequest {
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  body?: string | undefined;
  headersTimeout: number;
  bodyTimeout: number;
  signal: AbortSignal;
}

/** Where undici sends a URL; `origin`, `pathname` and `search` each build a new string on every read. */
const targets = new WeakMap<URL, { href: string; origin: string; path: string }>();

function targetOf(url: URL) {
  const href = url.href;
  let target = targets.get(url);
  // A URL can be changed in place: the cached parts hold only while its href is the one they were read from.
  if (target?.href !== href) {
    target = { href, origin: url.origin, path: url.pathname + url.search };
    targets.set(url, target);
  }
  return target;
}

export interface TextResponse {
  statusCode: number;
  /** The response headers, parsed on first use (a 2xx answer needs none). */
  headers(): Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * A whole answer read as text, for a call that needs all of it before it can use any (a non-streaming
 * completion). Hand-written on undici's dispatch handler because `request()` wraps every answer in a Readable
 * stream (plus an AsyncResource and an EventEmitter) only to be read to its end at once: that machinery cost
 * ~8 % of a non-streaming request's CPU. `onResponseHeaders` runs when the headers arrive.
 */
export function requestText(
  dispatcher: Dispatcher,
  url: URL,
  options: TextRequest,
  onResponseHeaders: () => void,
): Promise<TextResponse> {
  return new Promise((resolve, reject) =>
    dispatchTo(dispatcher, url, options, new TextHandler(options.signal, onResponseHeaders, resolve, reject)),
  );
}

/** Sends the request on undici's dispatch API, its answer going to `handler` (legacy handler methods). */
export function dispatchTo(dispatcher: Dispatcher, url: URL, options: TextRequest, handler: object): void {
  const { origin, path } = targetOf(url);
  dispatcher.dispatch(
    {
      method: options.method,
      headers: options.headers,
      body: options.body,
      headersTimeout: options.headersTimeout,
      bodyTimeout: options.bodyTimeout,
      origin,
      path,
    },
    handler as unknown as Dispatcher.DispatchHandler,
  );
}

const ONCE = { once: true } as const;
const NO_HEADERS: Buffer[] = [];

/**
 * requestText's dispatch handler, abort listener (`handleEvent`) and answer in one object: as closures
 * they were eight functions and three objects per call.
 */
class TextHandler implements TextResponse {
  statusCode = 0;
  text = '';
  #rawHeaders = NO_HEADERS;
  #parsed: Record<string, string | string[] | undefined> | undefined;
  readonly #chunks: Buffer[] = [];
  #abortCall: ((reason: Error) => void) | undefined;
  #reason: Error | undefined;

  constructor(
    private readonly signal: AbortSignal,
    private readonly onResponseHeaders: () => void,
    private readonly resolve: (response: TextResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {
    if (signal.aborted) this.handleEvent();
    else signal.addEventListener('abort', this, ONCE);
  }

  /** The caller's signal aborted. */
  handleEvent() {
    this.#reason = this.signal.reason ?? new errors.RequestAbortedError();
    this.#abortCall?.(this.#reason as Error);
  }

  headers() {
    this.#parsed ??= parseHeaders(this.#rawHeaders);
    return this.#parsed;
  }

  onConnect(abort: (reason: Error) => void) {
    if (this.#reason) abort(this.#reason);
    else this.#abortCall = abort;
  }

  onHeaders(status: number, headers: Buffer[]) {
    if (status < 200) return true; // 1xx: the real answer follows
    this.statusCode = status;
    this.#rawHeaders = headers;
    this.onResponseHeaders();
    return true;
  }

  onData(chunk: Buffer) {
    this.#chunks.push(chunk);
    return true;
  }

  onComplete() {
    this.signal.removeEventListener('abort', this);
    const chunks = this.#chunks;
    this.text = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8');
    this.resolve(this);
  }

  onError(err: Error) {
    this.signal.removeEventListener('abort', this);
    this.reject(err);
  }
}
