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

const { parseHeaders } = require('undici/lib/core/util.js') as {
  parseHeaders(raw: Buffer[]): Record<string, string | string[] | undefined>;
};

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
  options: Omit<RequestOptions, 'signal'> & { signal: AbortSignal },
  onResponseHeaders: () => void,
): Promise<TextResponse> {
  return new Promise((resolve, reject) => {
    const { signal } = options;
    let abortCall: ((reason: Error) => void) | undefined;
    let reason: Error | undefined;
    const onAbort = () => {
      reason = signal.reason ?? new errors.RequestAbortedError();
      abortCall?.(reason as Error);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    let statusCode = 0;
    let rawHeaders: Buffer[] = [];
    const chunks: Buffer[] = [];
    const settle = () => signal.removeEventListener('abort', onAbort);
    dispatcher.dispatch(
      { ...options, origin: url.origin, path: url.pathname + url.search } as Dispatcher.DispatchOptions,
      {
        onConnect(abort: (reason: Error) => void) {
          if (reason) abort(reason);
          else abortCall = abort;
        },
        onHeaders(status: number, headers: Buffer[]) {
          if (status < 200) return true; // 1xx: the real answer follows
          statusCode = status;
          rawHeaders = headers;
          onResponseHeaders();
          return true;
        },
        onData(chunk: Buffer) {
          chunks.push(chunk);
          return true;
        },
        onComplete() {
          settle();
          let parsed: Record<string, string | string[] | undefined> | undefined;
          resolve({
            statusCode,
            headers: () => (parsed ??= parseHeaders(rawHeaders)),
            text: (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'),
          });
        },
        onError(err: Error) {
          settle();
          reject(err);
        },
      } as unknown as Dispatcher.DispatchHandler,
    );
  });
}
