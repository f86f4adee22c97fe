/**
 * The one sequence every client protocol's model call goes through (issue 20), whatever its wire format:
 * the response cache (read, then filled), the gateway call (routing, limits, budgets reserved then settled),
 * the upstream's headers, the event stream with its back-pressure, its in-band failure and its metrics, and
 * one ledger row per request under the protocol. The routes only translate: what a protocol writes comes
 * from its `StreamRelay`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CacheKey } from '../../cache/cache.js';
import type { ResponseCache } from '../../cache/response-cache.js';
import type { AppError } from '../../core/errors.js';
import type { Metrics } from '../../metrics/registry.js';
import { principalOf } from '../../plugins/auth.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway, RouteInfo, StreamResult } from '../../providers/router/types.js';
import { TextBuffer } from '../../providers/text-buffer.js';
import { estimateUsage } from '../../providers/tokens.js';
import {
  type ChatCompletionRequest,
  NATIVE_RESPONSE,
  type StreamEvent,
  type Usage,
} from '../../providers/types.js';
import type { UsageProtocol, UsageRecorder } from '../usage/store.js';
import {
  abortOnClose,
  type CachePlan,
  type CallOutcome,
  callerOf,
  clientGone,
  completionUsage,
  drained,
  openEventStream,
  recordCall,
  sendWritten,
  statusOf,
  streamFailureStatus,
} from './lifecycle.js';

export interface IngressDeps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  metrics?: Metrics | undefined;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
}

/** What a protocol writes on its event stream; everything around it is the ingress's. */
export interface StreamRelay {
  /** One upstream event in the protocol's wire format ('' for nothing). */
  event(event: StreamEvent): string;
  /** The protocol's ending of a stream that completed (undefined: nothing more). */
  end(): string | undefined;
  /**
   * The protocol's in-band error event, after the first byte. Called even when the client is gone, so a
   * writer that keeps the response (Responses' stored object) marks it failed.
   */
  fail(err: unknown): string;
  /** The protocol's own count, when it has a better one than the last chunk's usage. */
  usage?(): Usage | undefined;
  /** The ledger status of a stream that ran to its end, when not `ok` (an upstream's `response.failed`). */
  completedStatus?(): string | undefined;
  /** After the stream, before its ledger row (storing a response). */
  settle?(): Promise<void>;
}

/** A streamed call: the model the client named, the internal request and its cache plan. */
export interface StreamCall {
  model: string;
  internal: ChatCompletionRequest;
  cache?: CachePlan | undefined;
}

/** An upstream's own event (pass-through), as it came. */
export const nativeEvent = (native: { event: string; data: string }) =>
  `event: ${native.event}\ndata: ${native.data}\n\n`;

/** What a gateway call takes from the client's request: its id, abort signal and caller. */
interface CallContext {
  requestId: string;
  signal: AbortSignal;
  caller: ReturnType<typeof callerOf>;
}

/**
 * The ingress of one client protocol: `protocol` names its ledger rows, `api` its `colloquy_active_streams`
 * label.
 */
export function protocolIngress(
  fastify: FastifyInstance,
  deps: IngressDeps,
  names: { protocol: UsageProtocol; api: string },
) {
  const signalFor = abortOnClose(fastify);
  // colloquy_active_streams' labels, one object for every stream (prom-client only reads them).
  const streamLabels = { api: names.api };
  const record = (request: FastifyRequest, model: string, outcome: CallOutcome) =>
    recordCall(deps.usage, request, names.protocol, model, outcome);

  /** A cached answer (its own ledger row, `x-cache: hit`), or undefined to call the upstream. */
  async function fromCache<T extends { route: RouteInfo | undefined }>(
    request: FastifyRequest,
    reply: FastifyReply,
    model: string,
    cache: CachePlan | undefined,
    get: (responses: ResponseCache, key: CacheKey) => Promise<T | undefined>,
    usageOf: (hit: T) => Usage | undefined,
  ): Promise<T | undefined> {
    if (!cache?.read || !deps.responses) return undefined;
    const hit = await get(deps.responses, cache.key);
    if (!hit) return undefined;
    reply.header('x-cache', 'hit');
    void record(request, model, {
      route: hit.route,
      usage: usageOf(hit),
      latencyMs: 0,
      status: 'ok',
      cached: true,
    });
    return hit;
  }

  /** A cached chat answer (its own ledger row, `x-cache: hit`), or undefined to call the upstream. */
  const cachedCompletion = (
    request: FastifyRequest,
    reply: FastifyReply,
    model: string,
    cache: CachePlan | undefined,
  ) =>
    fromCache(
      request,
      reply,
      model,
      cache,
      (responses, key) => responses.getCompletion(key),
      (hit) => hit.usage,
    );

  /**
   * One upstream call that is not streamed: a ledger row whether it answers or fails, and the answer's
   * headers (rate limits, the deployment) on the reply.
   */
  async function call<R extends { route: RouteInfo; latencyMs: number; headers?: Record<string, string> }>(
    request: FastifyRequest,
    reply: FastifyReply,
    model: string,
    run: (context: CallContext) => Promise<R>,
    usageOf: (result: R) => Usage | Promise<Usage>,
  ): Promise<R & { usage: Usage }> {
    const startedAt = performance.now();
    try {
      const result = await run({
        requestId: request.id,
        signal: signalFor(reply).signal,
        caller: callerOf(request),
      });
      // Usage is at hand unless it must be counted: waiting on a value costs a promise for nothing.
      const counted = usageOf(result);
      const usage = 'then' in counted ? await counted : counted;
      void record(request, model, { route: result.route, usage, latencyMs: result.latencyMs, status: 'ok' });
      if (result.headers) reply.headers(result.headers);
      reply.header('x-colloquy-deployment', result.route.deployment);
      return { ...result, usage };
    } catch (err) {
      void record(request, model, { latencyMs: performance.now() - startedAt, status: statusOf(err) });
      throw err;
    }
  }

  /** A chat call (not streamed), its answer cached when planned and when it is a translation. */
  async function complete(
    request: FastifyRequest,
    reply: FastifyReply,
    model: string,
    internal: ChatCompletionRequest,
    cache?: CachePlan | undefined,
  ) {
    const result = await call(
      request,
      reply,
      model,
      (context) => deps.gateway.complete({ body: internal, ...context }),
      (r) => completionUsage(internal, r.completion),
    );
    // An upstream's own answer (pass-through) carries what the internal format does not: never cached.
    if (cache && deps.responses && result.completion[NATIVE_RESPONSE] === undefined) {
      reply.header('x-cache', 'miss');
      void deps.responses.putCompletion(cache.key, result.completion, { route: result.route });
    }
    return result;
  }

  /**
   * A streamed chat call, replayed from the cache when planned. Before the first byte a failure (retried and
   * fallen back by the gateway first) is thrown, to answer with an HTTP error; after it, the relay's error
   * event ends the stream. A stream cut short is recorded with what it produced (status `partial`).
   */
  async function stream(request: FastifyRequest, reply: FastifyReply, call: StreamCall, relay: StreamRelay) {
    const controller = signalFor(reply);
    // Revoking the key, disabling its user or the credential expiring ends the stream, on every replica
    // (the README promises it at once), whatever the protocol: the relay's own error event carries why.
    let revokedBy: AppError | undefined;
    const unwatch = fastify.credentials.watch(
      principalOf(request),
      (reason) => {
        revokedBy = reason;
        controller.abort();
      },
      { expiry: true },
    );
    // Its ledger row is queued after the response has ended: the app's close waits for it (see hold()).
    const release = deps.usage.hold();
    try {
      await relayStream(request, reply, call, relay, controller.signal, () => revokedBy);
    } finally {
      unwatch();
      release();
    }
  }

  async function relayStream(
    request: FastifyRequest,
    reply: FastifyReply,
    call: StreamCall,
    relay: StreamRelay,
    signal: AbortSignal,
    revokedBy: () => AppError | undefined,
  ) {
    const { model, internal, cache } = call;
    const startedAt = performance.now();
    const hit = cache?.read ? await deps.responses?.replay(cache.key) : undefined;
    let result: StreamResult;
    try {
      result = hit
        ? { route: hit.route!, ttftMs: 0, events: hit.events }
        : await deps.gateway.stream({
            body: internal,
            requestId: request.id,
            signal,
            caller: callerOf(request),
          });
    } catch (caught) {
      // Revoked before the first byte: the route's error handler answers 401 in the protocol's shape.
      const err = revokedBy() ?? caught;
      void record(request, model, { latencyMs: performance.now() - startedAt, status: statusOf(err) });
      throw err;
    }
    let recorder = cache && !hit ? deps.responses?.recorder(cache.key, { route: result.route }) : undefined;
    const res = openEventStream(reply, {
      ...(result.route ? { 'x-colloquy-deployment': result.route.deployment } : {}),
      ...(cache ? { 'x-cache': hit ? 'hit' : 'miss' } : {}),
      ...result.headers,
    });
    let usage: Usage | undefined;
    const text = new TextBuffer();
    let status = 'ok';
    // Counted from the first event's write, which goes out first (time to first token, issue 26); a stream
    // that ends before any event is not counted.
    let active = false;
    try {
      for await (const event of result.events) {
        // Chunks already parsed keep coming after the client left: stop relaying (and reading) at once.
        if (signal.aborted || res.destroyed) throw clientGone();
        // The bytes go out first (time to first token); the bookkeeping follows while they travel.
        const out = relay.event(event);
        const full = out !== '' && !res.destroyed && !res.write(out);
        if (!active) {
          active = true;
          if (out !== '') sendWritten(res);
          deps.metrics?.activeStreams.inc(streamLabels);
        }
        const { chunk } = event;
        if (chunk.usage) usage = chunk.usage;
        const content = chunk.choices[0]?.delta?.content;
        if (content) text.append(content);
        if (event.native) {
          // An upstream's own event, relayed as it came: a stream that has one is never cached.
          recorder?.fail();
          recorder = undefined;
        } else recorder?.record(event);
        if (full) await drained(res, signal);
      }
      const end = relay.end();
      if (!res.destroyed) res.end(end);
      status = relay.completedStatus?.() ?? 'ok';
      void recorder?.commit();
    } catch (caught) {
      recorder?.fail();
      const revoked = revokedBy();
      // A revoked credential cuts the stream as an upstream fault would (`partial`), not as a client leaving.
      status = revoked ? 'partial' : streamFailureStatus(caught, signal);
      const err = revoked ?? caught;
      const out = relay.fail(err);
      if (!res.destroyed) res.end(out);
      if (revoked)
        request.log.info({ code: revoked.code }, 'stream ended: its credential stopped being valid');
      else if (!(err instanceof ProviderError)) request.log.error({ err }, 'stream failed');
    } finally {
      // Not counted: its series still shows, at what it was (as an increment and decrement would leave it).
      if (active) deps.metrics?.activeStreams.dec(streamLabels);
      else deps.metrics?.activeStreams.inc(streamLabels, 0);
    }
    await relay.settle?.();
    void record(request, model, {
      route: result.route,
      usage: relay.usage?.() ?? usage ?? (await estimateUsage(internal.messages, text.toString())),
      latencyMs: performance.now() - startedAt,
      ttftMs: result.ttftMs,
      status,
      cached: Boolean(hit),
    });
  }

  return { signalFor, fromCache, cachedCompletion, call, complete, stream };
}
