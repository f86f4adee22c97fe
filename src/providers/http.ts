import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { CallController } from '../core/call-signal.js';
import { scrubSecrets } from '../core/logger.js';
import type { LentDeadline } from './call-deadline.js';
import { connectionError, ProviderError, protocolError, timeoutError, upstreamHttpError } from './errors.js';
import type { Timeouts } from './types.js';
import {
  Agent,
  type RequestOptions,
  request,
  requestText,
  type TextResponse,
  errors as undiciErrors,
} from './undici.js';
import { requestStream, type StreamResponse } from './undici-stream.js';

/**
 * Keep-alive pools shared by every upstream: connections are reused across requests. No cap on connections per
 * upstream: with one, streams beyond it would queue inside Colloquy behind the open ones. undici takes the
 * connect timeout per pool, not per request, so there is one pool per configured connect timeout (usually one).
 */
const agents = new Map<number, InstanceType<typeof Agent>>();
function agentFor(connectTimeoutMs: number) {
  let agent = agents.get(connectTimeoutMs);
  if (!agent) {
    agent = new Agent({
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      pipelining: 1,
      connect: { timeout: connectTimeoutMs },
    });
    agents.set(connectTimeoutMs, agent);
  }
  return agent;
}

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: AsyncIterable<Buffer> & {
    text(): Promise<string>;
    json(): Promise<unknown>;
    destroy(err?: Error): void;
    /** Reads and drops the rest (up to `limit` bytes, else destroys): keeps a keep-alive connection usable. */
    dump(options?: { limit?: number }): Promise<unknown>;
  };
}

/** A request to an upstream on a shared keep-alive pool. */
export const upstreamRequest = (url: URL, options: RequestOptions, connectTimeoutMs: number) =>
  request(agentFor(connectTimeoutMs), url, options);

/** How long listing an upstream's models may take, each of connecting, the headers and the body. */
export const LIST_TIMEOUT_MS = 5_000;

/** A GET for an upstream's model list, bounded by LIST_TIMEOUT_MS. */
export const upstreamList = (url: URL, headers: Record<string, string>, signal: AbortSignal) =>
  upstreamRequest(
    url,
    { method: 'GET', headers, signal, headersTimeout: LIST_TIMEOUT_MS, bodyTimeout: LIST_TIMEOUT_MS },
    LIST_TIMEOUT_MS,
  );

export interface PostOptions {
  provider: string;
  /** Lent by the caller to bound the headers wait on its own signal and timer (see CallOptions.deadline). */
  deadline?: LentDeadline | undefined;
  url: URL;
  headers: Record<string, string>;
  body: string;
  signal: AbortSignal;
  timeouts: Timeouts;
  /** Time allowed until the response headers (the first-token timeout: headers come before any token). */
  headersTimeoutMs: number;
  /** A provider's own reading of its error answers (Azure's content filter, retry-after-ms…). */
  mapError?: HttpErrorMapper | undefined;
  /** The provider's credentials: scrubbed from error messages, which upstreams sometimes echo them into. */
  secrets?: readonly string[] | undefined;
}

/** Reads an upstream's non-2xx answer: its status, body text and a header by (lower-case) name. */
export type HttpErrorMapper = (
  status: number,
  text: string,
  header: (name: string) => string | undefined,
) => ProviderError;

/** POSTs JSON; non-2xx answers become ProviderErrors carrying the upstream's message and Retry-After. */
export async function postJson(options: PostOptions): Promise<UpstreamResponse> {
  let response: Awaited<ReturnType<typeof upstreamRequest>>;
  const deadline = headersDeadline(options);
  try {
    response = await upstreamRequest(
      options.url,
      postRequest(options, deadline.signal),
      options.timeouts.connectMs,
    );
  } catch (err) {
    deadline.clear();
    throw transportFailure(options, deadline.signal, err);
  } finally {
    deadline.stopTimer();
  }
  // The caller's signal still aborts the body until it has been read or dropped.
  response.body.once('close', deadline.clear);
  if (response.statusCode < 200 || response.statusCode >= 300) {
    const text = await response.body.text().catch(() => '');
    throw httpFailure(options, response.statusCode, text, response.headers);
  }
  return response as unknown as UpstreamResponse;
}

/**
 * POSTs JSON for a streamed answer (SSE), read as it arrives; failures as postJson's. The body reaches the
 * reader without undici's Readable stream in between (undici-stream.ts).
 */
export async function postStream(options: PostOptions): Promise<UpstreamResponse> {
  let response: StreamResponse;
  const deadline = headersDeadline(options);
  try {
    response = await requestStream(
      agentFor(options.timeouts.connectMs),
      options.url,
      postRequest(options, deadline.signal),
      deadline.stopTimer,
    );
  } catch (err) {
    deadline.clear();
    throw transportFailure(options, deadline.signal, err);
  }
  // The caller's signal still aborts the body until it has been read or dropped.
  response.body.once('close', deadline.clear);
  if (response.statusCode < 200 || response.statusCode >= 300) {
    const text = await response.body.text().catch(() => '');
    throw httpFailure(options, response.statusCode, text, response.headers);
  }
  return { status: response.statusCode, headers: response.headers, body: response.body };
}

/** POSTs JSON and reads the whole answer as text (a non-streaming call); failures as postJson's. */
export async function postForText(options: PostOptions): Promise<string> {
  let response: TextResponse;
  const deadline = headersDeadline(options);
  try {
    response = await requestText(
      agentFor(options.timeouts.connectMs),
      options.url,
      postRequest(options, deadline.signal),
      deadline.stopTimer,
    );
  } catch (err) {
    throw transportFailure(options, deadline.signal, err);
  } finally {
    deadline.clear();
  }
  if (response.statusCode < 200 || response.statusCode >= 300)
    throw httpFailure(options, response.statusCode, response.text, response.headers());
  return response.text;
}

/**
 * undici's own timeouts tick every half second or so: a precise timer enforces the headers deadline, and
 * undici's stays as a backstop. When the caller lends its deadline (the gateway does) it is the call's own
 * signal and timer (one AbortSignal and one timer per attempt), else a derived signal with a timer of its own.
 */
function headersDeadline(options: PostOptions) {
  const expired = () => timeoutError(options.provider, 'waiting for the response', options.headersTimeoutMs);
  const lent = options.deadline;
  if (!lent) return deadlineSignal(options.signal, options.headersTimeoutMs, expired);
  lent.headersWithin(options.headersTimeoutMs, expired);
  return { signal: options.signal, stopTimer: lent.headersCame, clear: lent.headersCame };
}

function postRequest(options: PostOptions, signal: AbortSignal) {
  return {
    method: 'POST' as const,
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body,
    headersTimeout: options.headersTimeoutMs + 1_000,
    // A backstop only (readSse enforces both deadlines precisely): the first chunk of a stream may take up
    // to the first-token timeout after the headers, which can be longer than the idle gap.
    bodyTimeout: Math.max(options.timeouts.idleMs, options.timeouts.firstTokenMs),
    signal,
  };
}

function transportFailure(options: PostOptions, signal: AbortSignal, err: unknown): ProviderError {
  if (signal.aborted && signal.reason instanceof ProviderError) return signal.reason;
  return mapTransportError(options.provider, err, options);
}

function httpFailure(
  options: PostOptions,
  status: number,
  text: string,
  headers: Record<string, string | string[] | undefined>,
): ProviderError {
  const header = (name: string) => {
    const value = headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  let err: ProviderError;
  if (options.mapError) err = options.mapError(status, text, header);
  else {
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: { message: text.slice(0, 500) || undefined } };
    }
    err = upstreamHttpError(options.provider, status, parsed, header('retry-after'));
  }
  return withoutSecrets(err, options.secrets);
}

/**
 * The error with the provider's secrets (and anything shaped like a key or token) removed from its message:
 * upstreams echo keys into error messages ("Incorrect API key provided: sk-…"), and the message reaches the
 * client, the logs and the traces.
 */
export function withoutSecrets(err: ProviderError, secrets: readonly string[] | undefined): ProviderError {
  const message = scrubSecrets(err.message, secrets ?? []);
  if (message === err.message) return err;
  return new ProviderError(message, err.details);
}

/**
 * A signal aborted by `parent` or after `ms` (by default as a TimeoutError, like AbortSignal.timeout), whose
 * timer and listener are dropped by `clear()`; `stopTimer()` ends only the deadline. AbortSignal.any/timeout
 * cost far more per request and would keep both alive until the timeout fires — minutes at the default total
 * timeout.
 */
export function deadlineSignal(
  parent: AbortSignal | undefined,
  ms: number,
  reason: () => unknown = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError'),
): { signal: AbortSignal; abort: (reason: unknown) => void; stopTimer: () => void; clear: () => void } {
  const controller = new CallController();
  const timer = setTimeout(() => controller.abort(reason()), ms);
  timer.unref();
  const stopTimer = () => clearTimeout(timer);
  const forward = () => {
    stopTimer();
    controller.abort(parent!.reason);
  };
  if (parent?.aborted) forward();
  else parent?.addEventListener('abort', forward, { once: true });
  return {
    signal: controller.signal,
    abort: (why) => controller.abort(why),
    stopTimer,
    clear: () => {
      stopTimer();
      parent?.removeEventListener('abort', forward);
    },
  };
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
 *
 * The deadlines run only while waiting for the upstream (not while the consumer is busy with a message).
 * One timer per stream is re-armed for each wait, and destroys the body when a deadline passes: a timer,
 * promise and race per chunk would stay alive for each chunk's whole wait and pile up in the old
 * generation with thousands of slow streams open.
 */
export async function* readSse(
  provider: string,
  body: UpstreamResponse['body'],
  options: { signal: AbortSignal; timeouts: Timeouts; startedAt: number },
): AsyncGenerator<EventSourceMessage> {
  const { timeouts, startedAt } = options;
  const queue: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (event) => queue.push(event) });
  const decoder = new TextDecoder();
  const iterator = body[Symbol.asyncIterator]();
  let received = false;
  let waiting = false;
  let failed = false;
  let failure: ProviderError | undefined;
  // The deadline being waited for: what it is called and its configured limit (for the error), the wait.
  let what = '';
  let limitMs = 0;
  let armedMs = 0;
  const expire = () => {
    if (!waiting) return;
    failure = timeoutError(provider, what, limitMs);
    body.destroy(failure);
  };
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    const elapsed = Date.now() - startedAt;
    const totalLeft = timeouts.totalMs - elapsed;
    let waitMs = received ? timeouts.idleMs : timeouts.firstTokenMs - elapsed;
    const nextWhat =
      totalLeft <= waitMs ? 'the whole call' : received ? 'gap between chunks' : 'time to first token';
    limitMs = totalLeft <= waitMs ? timeouts.totalMs : received ? timeouts.idleMs : timeouts.firstTokenMs;
    waitMs = Math.max(1, Math.min(waitMs, totalLeft));
    waiting = true;
    // The steady state (one idle gap after another) re-arms the same timer without allocating.
    if (timer && nextWhat === what && waitMs === armedMs) timer.refresh();
    else {
      clearTimeout(timer);
      timer = setTimeout(expire, waitMs);
    }
    what = nextWhat;
    armedMs = waitMs;
  };
  try {
    while (true) {
      arm();
      const next = await iterator.next();
      waiting = false;
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
    failed = true;
    throw failure ?? mapTransportError(provider, err, options);
  } finally {
    waiting = false;
    clearTimeout(timer);
    // A consumer that stopped at the stream's own end ([DONE], message_stop) leaves only its last bytes (the
    // chunked terminator) unread: they are read, not destroyed. undici builds a RequestAbortedError, stack
    // trace and all (~80 µs), for every body destroyed before its end. An aborted or failed call ends at once.
    if (failed || options.signal.aborted) body.destroy();
    else body.dump({ limit: 64 * 1024 }).catch(() => {});
  }
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

/**
 * A GET that proves an upstream is reachable and takes Colloquy's credentials (the doctor's check): resolves
 * on 2xx, otherwise throws the ProviderError a call would have got (secrets scrubbed).
 */
export async function probeUpstream(options: {
  provider: string;
  url: URL;
  headers: Record<string, string>;
  signal: AbortSignal;
  mapError?: HttpErrorMapper | undefined;
  secrets?: readonly string[] | undefined;
}): Promise<void> {
  let response: Awaited<ReturnType<typeof upstreamList>>;
  try {
    response = await upstreamList(options.url, options.headers, options.signal);
  } catch (err) {
    throw withoutSecrets(connectionError(options.provider, err), options.secrets);
  }
  const text = await response.body.text().catch(() => '');
  if (response.statusCode >= 200 && response.statusCode < 300) return;
  throw httpFailure(
    {
      provider: options.provider,
      mapError: options.mapError,
      secrets: options.secrets,
    } as PostOptions,
    response.statusCode,
    text,
    response.headers,
  );
}
