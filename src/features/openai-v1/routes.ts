import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { ResponseCache } from '../../cache/response-cache.js';
import type { Metrics } from '../../metrics/registry.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import { ProviderError } from '../../providers/errors.js';
import { rawBodyOf } from '../../providers/raw-body.js';
import type { ChatGateway } from '../../providers/router/types.js';
import type { ChatCompletionRequest } from '../../providers/types.js';
import { contextWindowFor, replyReserve } from '../conversations/context.js';
import { type Attachments, expandFileParts, namesUploads } from '../files/attachments.js';
import { protocolIngress } from '../ingress/call.js';
import { type CachePlan, planCache } from '../ingress/lifecycle.js';
import type { UsageRecorder } from '../usage/store.js';
import {
  ChatCompletionBody,
  ChatCompletionResponse,
  ModelObject,
  openAiErrors,
  validateWithoutCoercion,
} from './schemas.js';

export interface OpenAiV1Deps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  metrics?: Metrics | undefined;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
  /** Uploaded files referenced by `{type:'file', file:{file_id}}` parts (issue 24). */
  attachments?: Attachments | undefined;
}

/** Tokens an uploaded document may take in a /v1 request: the model's window less the reply's share. */
function documentBudget(body: ChatCompletionRequest) {
  const window = contextWindowFor(body.model);
  return window - replyReserve(window, body.max_completion_tokens ?? body.max_tokens) - 256;
}

/** The OpenAI-compatible API: what the `openai` SDK, LangChain and other OpenAI clients call unchanged. */
export async function openAiV1Routes(fastify: FastifyInstance, deps: OpenAiV1Deps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['openai'], security: bearerSecurity };
  const ingress = protocolIngress(fastify, deps, { protocol: 'chat_completions', api: 'v1' });

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
        response: { 200: ChatCompletionResponse, ...openAiErrors },
      },
    },
    async (request, reply) => {
      const body =
        deps.attachments && namesUploads(request.body as ChatCompletionRequest)
          ? await expandFileParts(
              deps.attachments,
              principalOf(request).userId,
              request.body as ChatCompletionRequest,
              documentBudget(request.body as ChatCompletionRequest),
            )
          : (request.body as ChatCompletionRequest);
      const cache = planCache(deps.responses, request, body);
      if (body.stream) return streamCompletion(request, reply, body, cache);
      // Most requests have no cache to read: no call, no promise to wait for.
      const hit = cache?.read ? await ingress.cachedCompletion(request, reply, body.model, cache) : undefined;
      if (hit) return hit.completion;
      const { completion } = await ingress.complete(request, reply, body.model, body, cache);
      // Pass-through (issue 26): an OpenAI-format upstream's answer that nothing transformed goes out as the
      // bytes it came in, instead of being serialized again from the parsed object (same JSON, same headers).
      const raw = rawBodyOf(completion);
      if (raw !== undefined) {
        reply.header('content-type', 'application/json; charset=utf-8');
        return raw;
      }
      return completion;
    },
  );

  function streamCompletion(
    request: FastifyRequest,
    reply: FastifyReply,
    body: ChatCompletionRequest,
    cache: CachePlan | undefined,
  ) {
    // Upstreams are always asked for usage; a client that did not ask must not get the extra chunk.
    const includeUsage = body.stream_options?.include_usage === true;
    return ingress.stream(
      request,
      reply,
      { model: body.model, internal: body, cache },
      {
        event: ({ chunk, raw }) =>
          chunk.choices.length === 0 && !includeUsage ? '' : `data: ${raw ?? JSON.stringify(chunk)}\n\n`,
        end: () => 'data: [DONE]\n\n',
        // After the first byte there is no HTTP status left to change: the error travels in-band, then [DONE]
        // (a revoked credential's too: the ingress passes its reason).
        fail: (err) => {
          const { body: errorBody } = toErrorResponse(err as ProviderError);
          const payload = { error: { ...errorBody.error, finish_reason: 'error' } };
          return `data: ${JSON.stringify(payload)}\n\ndata: [DONE]\n\n`;
        },
      },
    );
  }

  const endpointsField = (model: string) =>
    deps.gateway.modelEndpoints ? { endpoints: deps.gateway.modelEndpoints(model) } : {};

  app.get(
    '/v1/models',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'List the models a client may ask for',
        response: {
          200: Type.Object({ object: Type.Literal('list'), data: Type.Array(ModelObject) }),
          ...openAiErrors,
        },
      },
    },
    async (request) => {
      // A key restricted to some models (allowed_models) is shown only those.
      const allowed = principalOf(request).allowedModels;
      return {
        object: 'list' as const,
        data: (await deps.gateway.listModels())
          .filter((m) => !allowed || allowed.includes(m.id))
          .map((m) => ({
            ...m,
            object: 'model' as const,
            created: 0,
            ...endpointsField(m.id),
          })),
      };
    },
  );

  app.get(
    '/v1/models/:model',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'One model',
        params: Type.Object({ model: Type.String() }),
        response: { 200: ModelObject, ...openAiErrors },
      },
    },
    async (request) => {
      const model = request.params.model;
      const allowed = principalOf(request).allowedModels;
      const found =
        allowed && !allowed.includes(model)
          ? undefined
          : deps.gateway.findModel
            ? await deps.gateway.findModel(model)
            : (await deps.gateway.listModels()).find((m) => m.id === model);
      if (!found) {
        throw new ProviderError(`The model \`${model}\` does not exist or you do not have access to it.`, {
          provider: 'colloquy',
          status: 404,
          code: 'model_not_found',
          type: 'invalid_request_error',
          param: 'model',
          retryable: false,
        });
      }
      return {
        id: model,
        object: 'model' as const,
        created: 0,
        owned_by: found.owned_by,
        ...endpointsField(model),
      };
    },
  );
}
