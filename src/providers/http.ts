import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Agent, request, errors as undiciErrors } from 'undici';
import { connectionError, ProviderError, protocolError, timeoutError, upstreamHttpError } from './errors.js';
import type { Timeouts } from './types.js';

/**
 * One keep-alive pool for every upstream: connections are reused across requests. No cap on connections per
 * upstream: with one, streams beyond it would queue inside Colloquy behind the open ones.
 */
const agent = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, pipelining: 1 });

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer> & {
    text(): Promise<string>;
    json(): Promise<unknown>;
    destroy(err?: Error): void;
  };
}

export interface PostOptions {
  provider: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  timeouts: Timeouts;
  /** Time allowed until the response headers (the first-token timeout: headers come before any token). */
  headersTimeoutMs: number;
}

/** POSTs JSON; non-2xx answers become ProviderErrors carrying the upstream's message and Retry-After. */
export async function postJson(options: PostOptions): Promise<UpstreamResponse> {
  let response: Awaited<ReturnType<typeof request>>;
  // undici's own timeouts tick every half second or so: a precise timer enforces the headers deadline, and
  // undici's stays as a backstop.
  const headersDeadline = new AbortController();
  const timer = setTimeout(
    () =>
      headersDeadline.abort(
        timeoutError(options.provider, 'waiting for the response', options.headersTimeoutMs),
      ),
    options.headersTimeoutMs,
  );
  try {
    response = await request(options.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body: options.body,
      signal: AbortSignal.any([options.signal, headersDeadline.signal]),
      dispatcher: agent,
      headersTimeout: options.headersTimeoutMs + 1_000,
      // A backstop only (readSse enforces both deadlines precisely): the first chunk of a stream may take up
      // to the first-token timeout after the headers, which can be longer than the idle gap.
      bodyTimeout: Math.max(options.timeouts.idleMs, options.timeouts.firstTokenMs),
      connectTimeout: options.timeouts.connectMs,
    } as Parameters<typeof request>[1]);
  } catch (err) {
    if (headersDeadline.signal.aborted && !options.signal.aborted) throw headersDeadline.signal.reason;
    throw mapTransportError(options.provider, err, options);
  } finally {
    clearTimeout(timer);
  }
  if (response.statusCode < 200 || response.statusCode >= 300) {
    const text = await response.body.text().catch(() => '');
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: { message: text.slice(0, 500) || undefined } };
    }
    throw upstreamHttpError(options.provider, response.statusCode, parsed, response.headers['retry-after']);
  }
  return response as unknown as UpstreamResponse;
}

export function mapTransportError(
  provider: string,
  err: unknown,
  options: { signal: AbortSignal; timeouts: Timeouts; headersTimeoutMs?: number },
): ProviderError {
  if (err instanceof ProviderError) return err;
  if (options.signal.aborted) {
    const reason = options.signal.reason;
    if (reason instanceof ProviderError) return reason;
    // The gateway bounds each call with AbortSignal.timeout(total): that is a timeout, not a cancelled client.
    if ((reason as Error | undefined)?.name === 'TimeoutError') {
      return timeoutError(provider, 'the whole call', options.timeouts.totalMs);
    }
    return new ProviderError('request cancelled', {
      provider,
      status: 499,
      code: 'cancelled',
      retryable: false,
      kind: 'cancelled',
    });
  }
  if (err instanceof undiciErrors.HeadersTimeoutError) {
    return timeoutError(
      provider,
      'waiting for the response',
      options.headersTimeoutMs ?? options.timeouts.firstTokenMs,
    );
  }
  if (err instanceof undiciErrors.BodyTimeoutError)
    return timeoutError(provider, 'gap between chunks', options.timeouts.idleMs);
  if (err instanceof undiciErrors.ConnectTimeoutError)
    return timeoutError(provider, 'connecting', options.timeouts.connectMs);
  return connectionError(provider, err);
}

/**
 * Reads an SSE body into messages with a time-to-first-message and an idle-gap deadline. A body that ends
 * without the stream's proper end is reported by the caller, who knows what "proper" means.
 */
export async function* readSse(
  provider: string,
  body: UpstreamResponse['body'],
  options: { signal: AbortSignal; timeouts: Timeouts; startedAt: number },
): AsyncGenerator<EventSourceMessage> {
  const queue: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => queue.push(event) });
  const decoder = new TextDecoder();
  const iterator = body[Symbol.asyncIterator]();
  let received = false;
  try {
    while (true) {
      const deadline = received
        ? options.timeouts.idleMs
        : options.timeouts.firstTokenMs - (Date.now() - options.startedAt);
      const totalLeft = options.timeouts.totalMs - (Date.now() - options.startedAt);
      const waitMs = Math.max(1, Math.min(deadline, totalLeft));
      const next = await nextWithin(iterator, waitMs);
      if (next === TIMEOUT) {
        const what =
          totalLeft <= deadline ? 'the whole call' : received ? 'gap between chunks' : 'time to first token';
        throw timeoutError(
          provider,
          what,
          totalLeft <= deadline
            ? options.timeouts.totalMs
            : received
              ? options.timeouts.idleMs
              : options.timeouts.firstTokenMs,
        );
      }
      if (next.done) break;
      parser.feed(decoder.decode(next.value, { stream: true }));
      while (queue.length) {
        received = true;
        yield queue.shift()!;
      }
    }
    parser.feed(decoder.decode());
    while (queue.length) yield queue.shift()!;
  } catch (err) {
    throw mapTransportError(provider, err, options);
  } finally {
    body.destroy();
  }
}

const TIMEOUT = Symbol('timeout');

function nextWithin<T>(iterator: AsyncIterator<T>, ms: number): Promise<IteratorResult<T> | typeof TIMEOUT> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    iterator.next(),
    new Promise<typeof TIMEOUT>((resolve) => {
      timer = setTimeout(() => resolve(TIMEOUT), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function parseJsonEvent<T>(provider: string, data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch {
    throw protocolError(provider, `malformed JSON in stream: ${data.slice(0, 100)}`);
  }
}

/** Joins a base URL and a path without doubling or losing slashes. */
export const joinUrl = (base: string, path: string) =>
  `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
