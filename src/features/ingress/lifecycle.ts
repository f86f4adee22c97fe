/**
 * What every client protocol (chat completions, Messages, …) does around a model call, whatever its wire
 * format (issue 20): abort the upstream call when the client leaves or the server drains, wait for a slow
 * client, open an event stream, record the request in the ledger under its protocol.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CacheKey } from '../../cache/cache.js';
import type { CacheScope, ResponseCache } from '../../cache/response-cache.js';
import { CallController } from '../../core/call-signal.js';
import { principalOf } from '../../plugins/auth.js';
import { ProviderError } from '../../providers/errors.js';
import type { RouteInfo } from '../../providers/router/types.js';
import { estimateUsage } from '../../providers/tokens.js';
import type {
  ChatCompletion,
  ChatCompletionRequest,
  EmbeddingRequest,
  Usage,
} from '../../providers/types.js';
import type { UsageProtocol, UsageRecorder } from '../usage/store.js';

/**
 * Aborts the upstream call when the client goes away (nobody would read the rest) or when shutdown ends the
 * open streams. One shutdown listener serves every request: an EventTarget listener per request costs more
 * than the request's own signal.
 */
export function abortOnClose(app: FastifyInstance) {
  const open = new Set<CallController>();
  app.shutdownSignal.addEventListener('abort', () => {
    for (const controller of open) controller.abort();
  });
  return (reply: FastifyReply): CallController => {
    const controller = new CallController();
    if (app.shutdownSignal.aborted) controller.abort();
    open.add(controller);
    // 'close' before the response finished means the client disconnected (not a keep-alive socket
    // listener, which would pile up across requests). A response closes once: `on`, as `once` would wrap the
    // listener in a bound function and its state for nothing.
    reply.raw.on('close', () => {
      open.delete(controller);
      if (!reply.raw.writableFinished) controller.abort();
    });
    return controller;
  };
}

/** Resolves once the client can take more, or is gone (a destroyed response never drains). */
export function drained(
  res: NodeJS.WritableStream & { destroyed?: boolean },
  signal: AbortSignal,
): Promise<void> {
  if (signal.aborted || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

export const clientGone = () =>
  new ProviderError('request cancelled: the client went away', {
    provider: 'colloquy',
    status: 499,
    code: 'cancelled',
    retryable: false,
    kind: 'cancelled',
  });

/** The ledger status of a call that failed before its answer began. */
export function statusOf(err: unknown): string {
  return err instanceof ProviderError && err.details.kind === 'cancelled' ? 'cancelled' : 'error';
}

/** The ledger status of a stream that failed after its first byte. */
export function streamFailureStatus(err: unknown, signal: AbortSignal): 'cancelled' | 'partial' {
  return signal.aborted || (err instanceof ProviderError && err.details.kind === 'cancelled')
    ? 'cancelled'
    : 'partial';
}

/**
 * Takes the response over for server-sent events: after this, Fastify no longer writes it, and failures
 * travel in-band in the protocol's own error event.
 */
export function openEventStream(reply: FastifyReply, headers: OutgoingHttpHeaders): ServerResponse {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, {
    // What hooks set (request id, security and CORS headers): hijacking skips Fastify's own writeHead.
    ...(reply.getHeaders() as OutgoingHttpHeaders),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    ...headers,
  });
  return res;
}

/**
 * Hands what a response has written so far to its socket now. Node corks the socket on a response's write
 * and uncorks it on the next tick, and a write made inside a promise job (the relay loop) has its next tick
 * only once every job queued after it has run: the rest of the loop's turn, its bookkeeping and the read
 * of the next chunk. For the first event that wait is time to first token (issue 26). Same bytes, written
 * together as the tick would have; the tick's own uncork then finds nothing corked.
 */
export function sendWritten(res: ServerResponse): void {
  const socket = res.socket;
  if (socket !== null && socket.writableCorked > 0) socket.uncork();
}

export interface CallOutcome {
  route?: RouteInfo | undefined;
  usage?: Usage | undefined;
  latencyMs?: number;
  ttftMs?: number;
  status: string;
  cached?: boolean;
}

/** One ledger row for the request, under its client protocol (a column and a metrics label). */
export function recordCall(
  usage: UsageRecorder,
  request: FastifyRequest,
  protocol: UsageProtocol,
  model: string,
  outcome: CallOutcome,
) {
  const principal = principalOf(request);
  usage.enqueue({
    requestId: request.id,
    protocol,
    userId: principal.userId,
    apiKeyId: principal.apiKeyId,
    model,
    ...outcome,
  });
}

/** Who asks, for the gateway's rate limits and budgets. */
export const callerOf = (request: FastifyRequest) => ({ principal: principalOf(request), ip: request.ip });

/** A non-streamed answer's usage: the upstream's count, else an estimate from the prompt and the text. */
export function completionUsage(
  internal: ChatCompletionRequest,
  completion: ChatCompletion,
): Usage | Promise<Usage> {
  if (completion.usage) return completion.usage;
  return estimateUsage(internal.messages, completion.choices.map((c) => c.message.content ?? '').join(''));
}

export interface CachePlan {
  key: CacheKey;
  /** False under `Cache-Control: no-cache`: answer fresh, but still store the answer. */
  read: boolean;
}

/**
 * Deterministic requests (temperature 0, or `X-Colloquy-Cache: on`) are answered from the cache of the
 * caller's own tenant (its API key, else its user); `Cache-Control: no-store` skips the cache,
 * `no-cache` skips reading it. The master key, acting for nobody, is never cached. The key is the internal
 * request's, so one question asked by two protocols is one entry.
 */
export function planCache(
  responses: ResponseCache | undefined,
  request: FastifyRequest,
  body: ChatCompletionRequest,
): CachePlan | undefined {
  if (!responses) return undefined;
  const control = String(request.headers['cache-control'] ?? '').toLowerCase();
  if (control.includes('no-store')) return undefined;
  const optIn =
    String(request.headers['x-colloquy-cache'] ?? '').toLowerCase() === 'on' ||
    principalOf(request).cacheResponses === true;
  if (!responses.isCacheable(body, { optIn })) return undefined;
  const principal = principalOf(request);
  // The guardrails that apply to the caller are part of the key: an answer made under others is not served.
  const who = { role: principal.role, apiKeyId: principal.apiKeyId };
  return scopedPlan(request, control, (scope) => responses.key(scope, body, undefined, who));
}

/**
 * Embeddings are deterministic, so every request is cacheable on its exact input (and model, dimensions,
 * encoding): the same tenant scope and Cache-Control rules as chat, the master key never cached.
 */
export function planEmbeddingCache(
  responses: ResponseCache | undefined,
  request: FastifyRequest,
  body: EmbeddingRequest,
): CachePlan | undefined {
  if (!responses) return undefined;
  const control = String(request.headers['cache-control'] ?? '').toLowerCase();
  if (control.includes('no-store')) return undefined;
  return scopedPlan(request, control, (scope) => responses.key(scope, body, 'embeddings'));
}

function scopedPlan(
  request: FastifyRequest,
  control: string,
  key: (scope: CacheScope) => CacheKey,
): CachePlan | undefined {
  const principal = principalOf(request);
  const scope = principal.apiKeyId
    ? `key:${principal.apiKeyId}`
    : principal.userId
      ? `user:${principal.userId}`
      : undefined;
  if (!scope) return undefined;
  return { key: key(scope as CacheScope), read: !control.includes('no-cache') };
}
