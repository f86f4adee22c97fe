import type { OutgoingHttpHeaders } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { CacheKey } from '../../cache/cache.js';
import type { CacheScope, ResponseCache } from '../../cache/response-cache.js';
import { CallController } from '../../core/call-signal.js';
import type { Metrics } from '../../metrics/registry.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway, RouteInfo } from '../../providers/router/types.js';
import { TextBuffer } from '../../providers/text-buffer.js';
import { estimateUsage } from '../../providers/tokens.js';
import type { ChatCompletionRequest, Usage } from '../../providers/types.js';
import type { UsageRecorder } from '../usage/store.js';
import {
  ChatCompletionBody,
  ChatCompletionResponse,
  ModelObject,
  validateWithoutCoercion,
} from './schemas.js';

const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  404: Type.Ref('Error'),
  429: Type.Ref('Error'),
  502: Type.Ref('Error'),
  503: Type.Ref('Error'),
  504: Type.Ref('Error'),
};

export interface OpenAiV1Deps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  metrics?: Metrics | undefined;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
}

interface CachePlan {
  key: CacheKey;
  /** False under `Cache-Control: no-cache`: answer fresh, but still store the answer. */
  read: boolean;
}

/** The OpenAI-compatible API: what the `openai` SDK, LangChain and other OpenAI clients call unchanged. */
export async function openAiV1Routes(fastify: FastifyInstance, deps: OpenAiV1Deps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['openai'], security: bearerSecurity };
  const signalFor = abortOnClose(fastify);

  app.post(
    '/v1/chat/completions',
    {
      preHandler: app.authenticate,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        ...common,
        summary:
          'Create a chat completion (OpenAI-compatible; `stream: true` answers with server-sent events)',
        body: ChatCompletionBody,
        response: { 200: ChatCompletionResponse, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body as ChatCompletionRequest;
      const cache = cachePlan(request, body);
      if (body.stream) return streamCompletion(request, reply, body, cache);
      if (cache?.read) {
        const hit = await deps.responses!.getCompletion(cache.key);
        if (hit) {
          reply.header('x-cache', 'hit');
          void record(request, body, {
            route: hit.route,
            usage: hit.usage,
            latencyMs: 0,
            status: 'ok',
            cached: true,
          });
          return hit.completion;
        }
      }
      const startedAt = performance.now();
      try {
        const result = await deps.gateway.complete({
          body,
          requestId: request.id,
          signal: signalFor(reply),
          caller: { principal: principalOf(request), ip: request.ip },
        });
        const usage =
          result.completion.usage ??
          (await estimateUsage(
            body.messages,
            result.completion.choices.map((c) => c.message.content ?? '').join(''),
          ));
        void record(request, body, { route: result.route, usage, latencyMs: result.latencyMs, status: 'ok' });
        if (cache) {
          reply.header('x-cache', 'miss');
          void deps.responses!.putCompletion(cache.key, result.completion, { route: result.route });
        }
        reply.headers(result.headers ?? {});
        reply.header('x-colloquy-deployment', result.route.deployment);
        return result.completion;
      } catch (err) {
        void record(request, body, { latencyMs: performance.now() - startedAt, status: statusOf(err) });
        throw err;
      }
    },
  );

  /**
   * Deterministic requests (temperature 0, or `X-Colloquy-Cache: on`) are answered from the cache of the
   * caller's own tenant (its API key, else its user); `Cache-Control: no-store` skips the cache,
   * `no-cache` skips reading it. The master key, acting for nobody, is never cached.
   */
  function cachePlan(request: FastifyRequest, body: ChatCompletionRequest): CachePlan | undefined {
    const responses = deps.responses;
    if (!responses) return undefined;
    const control = String(request.headers['cache-control'] ?? '').toLowerCase();
    if (control.includes('no-store')) return undefined;
    const optIn =
      String(request.headers['x-colloquy-cache'] ?? '').toLowerCase() === 'on' ||
      principalOf(request).cacheResponses === true;
    if (!responses.isCacheable(body, { optIn })) return undefined;
    const principal = principalOf(request);
    const scope = principal.apiKeyId
      ? `key:${principal.apiKeyId}`
      : principal.userId
        ? `user:${principal.userId}`
        : undefined;
    if (!scope) return undefined;
    return { key: responses.key(scope as CacheScope, body), read: !control.includes('no-cache') };
  }

  async function streamCompletion(
    request: FastifyRequest,
    reply: FastifyReply,
    body: ChatCompletionRequest,
    cache: CachePlan | undefined,
  ) {
    const startedAt = performance.now();
    const signal = signalFor(reply);
    const hit = cache?.read ? await deps.responses!.replay(cache.key) : undefined;
    // Before the first chunk nothing has been sent, so failures still answer with a proper HTTP error.
    let result: Awaited<ReturnType<ChatGateway['stream']>>;
    try {
      result = hit
        ? { route: hit.route!, ttftMs: 0, events: hit.events }
        : await deps.gateway.stream({
            body,
            requestId: request.id,
            signal,
            caller: { principal: principalOf(request), ip: request.ip },
          });
    } catch (err) {
      void record(request, body, { latencyMs: performance.now() - startedAt, status: statusOf(err) });
      throw err;
    }
    const recorder = cache && !hit ? deps.responses!.recorder(cache.key, { route: result.route }) : undefined;
    const includeUsage = body.stream_options?.include_usage === true;
    const res = reply.raw;
    reply.hijack();
    res.writeHead(200, {
      // What hooks set (request id, security and CORS headers): hijacking skips Fastify's own writeHead.
      ...(reply.getHeaders() as OutgoingHttpHeaders),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      ...(result.route ? { 'x-colloquy-deployment': result.route.deployment } : {}),
      ...(cache ? { 'x-cache': hit ? 'hit' : 'miss' } : {}),
      ...result.headers,
    });
    let usage: Usage | undefined;
    const text = new TextBuffer();
    let status = 'ok';
    deps.metrics?.activeStreams.inc({ api: 'v1' });
    try {
      for await (const event of result.events) {
        // Chunks already parsed keep coming after the client left: stop relaying (and reading) at once.
        if (signal.aborted || res.destroyed) throw clientGone();
        const { chunk } = event;
        recorder?.record(event);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices[0]?.delta;
        if (delta?.content) text.append(delta.content);
        // Upstreams are always asked for usage; a client that did not ask must not get the extra chunk.
        if (chunk.choices.length === 0 && !includeUsage) continue;
        const data = event.raw ?? JSON.stringify(chunk);
        if (!res.write(`data: ${data}\n\n`)) await drained(res, signal);
      }
      res.end('data: [DONE]\n\n');
      void recorder?.commit();
    } catch (err) {
      recorder?.fail();
      status =
        signal.aborted || (err instanceof ProviderError && err.details.kind === 'cancelled')
          ? 'cancelled'
          : 'partial';
      if (!res.destroyed) {
        // After the first byte there is no HTTP status left to change: the error travels in-band, then [DONE].
        const { body: errorBody } = toErrorResponse(err as ProviderError);
        const payload = { error: { ...errorBody.error, finish_reason: 'error' } };
        res.end(`data: ${JSON.stringify(payload)}\n\ndata: [DONE]\n\n`);
      }
      if (!(err instanceof ProviderError)) request.log.error({ err }, 'stream failed');
    } finally {
      deps.metrics?.activeStreams.dec({ api: 'v1' });
    }
    void record(request, body, {
      route: result.route,
      usage: usage ?? (await estimateUsage(body.messages, text.toString())),
      latencyMs: performance.now() - startedAt,
      ttftMs: result.ttftMs,
      status,
      cached: Boolean(hit),
    });
  }

  function record(
    request: FastifyRequest,
    body: ChatCompletionRequest,
    outcome: {
      route?: RouteInfo | undefined;
      usage?: Usage | undefined;
      latencyMs?: number;
      ttftMs?: number;
      status: string;
      cached?: boolean;
    },
  ) {
    const principal = principalOf(request);
    return deps.usage.record({
      requestId: request.id,
      userId: principal.userId,
      apiKeyId: principal.apiKeyId,
      model: body.model,
      ...outcome,
    });
  }

  app.get(
    '/v1/models',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'List the models a client may ask for',
        response: {
          200: Type.Object({ object: Type.Literal('list'), data: Type.Array(ModelObject) }),
          ...errors,
        },
      },
    },
    async () => ({
      object: 'list' as const,
      data: (await deps.gateway.listModels()).map((m) => ({ ...m, object: 'model' as const, created: 0 })),
    }),
  );

  app.get(
    '/v1/models/:model',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'One model',
        params: Type.Object({ model: Type.String() }),
        response: { 200: ModelObject, ...errors },
      },
    },
    async (request) => {
      const found = (await deps.gateway.listModels()).find((m) => m.id === request.params.model);
      if (!found && !deps.gateway.hasModel(request.params.model)) {
        throw new ProviderError(
          `The model \`${request.params.model}\` does not exist or you do not have access to it.`,
          {
            provider: 'colloquy',
            status: 404,
            code: 'model_not_found',
            type: 'invalid_request_error',
            param: 'model',
            retryable: false,
          },
        );
      }
      return {
        id: request.params.model,
        object: 'model' as const,
        created: 0,
        owned_by: found?.owned_by ?? 'colloquy',
      };
    },
  );
}

/**
 * Aborts the upstream call when the client goes away (nobody would read the rest) or when shutdown ends the
 * open streams. One shutdown listener serves every request: an EventTarget listener per request costs more
 * than the request's own signal.
 */
function abortOnClose(app: FastifyInstance) {
  const open = new Set<CallController>();
  app.shutdownSignal.addEventListener('abort', () => {
    for (const controller of open) controller.abort();
  });
  return (reply: FastifyReply): AbortSignal => {
    const controller = new CallController();
    if (app.shutdownSignal.aborted) controller.abort();
    open.add(controller);
    // 'close' before the response finished means the client disconnected (not a keep-alive socket
    // listener, which would pile up across requests).
    reply.raw.once('close', () => {
      open.delete(controller);
      if (!reply.raw.writableFinished) controller.abort();
    });
    return controller.signal;
  };
}

/** Resolves once the client can take more, or is gone (a destroyed response never drains). */
function drained(res: NodeJS.WritableStream & { destroyed?: boolean }, signal: AbortSignal): Promise<void> {
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

const clientGone = () =>
  new ProviderError('request cancelled: the client went away', {
    provider: 'colloquy',
    status: 499,
    code: 'cancelled',
    retryable: false,
    kind: 'cancelled',
  });

function statusOf(err: unknown): string {
  return err instanceof ProviderError && err.details.kind === 'cancelled' ? 'cancelled' : 'error';
}
