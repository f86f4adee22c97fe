import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { ResponseCache } from '../../cache/response-cache.js';
import { AppError } from '../../core/errors.js';
import type { Metrics } from '../../metrics/registry.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { type ChatCompletionRequest, NATIVE_REQUEST, NATIVE_RESPONSE } from '../../providers/types.js';
import { nativeEvent, protocolIngress } from '../ingress/call.js';
import { type CachePlan, planCache } from '../ingress/lifecycle.js';
import { openAiErrors, validateWithoutCoercion } from '../openai-v1/schemas.js';
import type { UsageRecorder } from '../usage/store.js';
import { fromCompletion, newItemId, type ResponseObject, type ResponseShell } from './from-internal.js';
import { asStored, finalResponse, nativeBody } from './pass-through.js';
import type { ResponsesStore } from './store.js';
import { ResponsesStreamWriter, sse } from './stream-writer.js';
import {
  inputItems,
  type ResponseInputItem,
  type ResponsesRequest,
  toInternalRequest,
} from './to-internal.js';

export interface ResponsesDeps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  store: ResponsesStore;
  metrics?: Metrics | undefined;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
}

/** The fields Colloquy reads are checked; others are refused by the translation when they matter. */
const ResponsesBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 256 }),
    input: Type.Union([Type.String(), Type.Array(Type.Object({}, { additionalProperties: true }))]),
    instructions: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    tools: Type.Optional(Type.Array(Type.Object({ type: Type.String() }, { additionalProperties: true }))),
    tool_choice: Type.Optional(Type.Unknown()),
    max_output_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 1 }), Type.Null()])),
    temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
    top_p: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()])),
    stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    store: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    previous_response_id: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    metadata: Type.Optional(Type.Union([Type.Record(Type.String(), Type.String()), Type.Null()])),
    user: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

const ResponseSchema = Type.Object(
  { id: Type.String(), object: Type.Literal('response'), status: Type.String() },
  { additionalProperties: true },
);

const notFound = (id: string) =>
  new ProviderError(`Response with id '${id}' not found.`, {
    provider: 'colloquy',
    status: 404,
    code: 'not_found',
    type: 'invalid_request_error',
    param: 'previous_response_id',
    retryable: false,
  });

/**
 * The OpenAI Responses API (issue 20), behind the same gateway (limits, budgets, guardrails, routing) and
 * ledger (protocol `responses`) as chat. An `openai` deployment gets the client's body as it came (only
 * `model` replaced) and its answer is relayed as it came; every other upstream gets a translation onto the
 * internal chat-completions request. Translated answers are cached like chat completions (one entry per
 * internal request). Responses are stored unless `store: false`, so `previous_response_id` continues a
 * conversation, whichever deployment served the earlier turns.
 */
export async function responsesRoutes(fastify: FastifyInstance, deps: ResponsesDeps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['openai'], security: bearerSecurity };
  const ingress = protocolIngress(fastify, deps, { protocol: 'responses', api: 'responses' });

  app.post(
    '/v1/responses',
    {
      preHandler: app.authenticate,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        ...common,
        summary: 'Create a model response (OpenAI Responses API; `stream: true` answers with its events)',
        body: ResponsesBody,
        response: { 200: ResponseSchema, ...openAiErrors },
      },
    },
    async (request, reply) => {
      const body = request.body as ResponsesRequest;
      const principal = principalOf(request);
      let history: ResponseInputItem[] = [];
      if (body.previous_response_id) {
        const previous = await deps.store.get(principal, body.previous_response_id);
        if (!previous) throw notFound(body.previous_response_id);
        history = [...previous.inputItems, ...(previous.response.output as ResponseInputItem[])];
      }
      const support = deps.gateway.nativeSupport?.(body.model, 'responses') ?? 'none';
      const internal = toInternalRequest(body, history, { lenient: support === 'all' });
      if (support !== 'none')
        internal[NATIVE_REQUEST] = { protocol: 'responses', body: nativeBody(body, history), headers: {} };
      // An upstream's own answer carries what the internal format does not: only translations are cached.
      const cache = support === 'all' ? undefined : planCache(deps.responses, request, internal);
      const shell: ResponseShell = {
        id: newItemId('resp'),
        createdAt: Math.floor(Date.now() / 1000),
        request: body,
      };
      // The conversation is put together only when it is stored (not for `store: false`).
      const save = (response: ResponseObject) =>
        body.store === false
          ? undefined
          : deps.store.save(principal, {
              id: response.id,
              inputItems: history.length ? [...history, ...inputItems(body.input)] : inputItems(body.input),
              response,
            });
      if (body.stream) return streamResponse(request, reply, internal, shell, save, cache);
      const hit = await ingress.cachedCompletion(request, reply, body.model, cache);
      if (hit) {
        const response = fromCompletion(hit.completion, shell, hit.usage);
        await save(response);
        return serialized(reply, response);
      }
      const { completion, usage } = await ingress.complete(request, reply, body.model, internal, cache);
      const native = completion[NATIVE_RESPONSE] as ResponseObject | undefined;
      const response = native ? asStored(native, body) : fromCompletion(completion, shell, usage);
      await save(response);
      return serialized(reply, response);
    },
  );

  /**
   * The response object as JSON, written here rather than by the route's schema: the schema names three of
   * its ~25 properties, and fast-json-stringify takes every other one through its generic path, slower than
   * JSON.stringify (~4 % of a request's CPU). The same JSON, in the object's own order (OpenAI's).
   */
  function serialized(reply: FastifyReply, response: ResponseObject) {
    reply.header('content-type', 'application/json; charset=utf-8');
    return JSON.stringify(response);
  }

  function streamResponse(
    request: FastifyRequest,
    reply: FastifyReply,
    internal: ChatCompletionRequest,
    shell: ResponseShell,
    save: (response: ResponseObject) => Promise<void> | undefined,
    cache: CachePlan | undefined,
  ) {
    const body = shell.request;
    const writer = new ResponsesStreamWriter(shell);
    // A pass-through stream: the upstream's events as they came, and its final response object.
    let relayed = 0;
    let native: ResponseObject | undefined;
    return ingress.stream(
      request,
      reply,
      { model: body.model, internal, cache },
      {
        event: (event) => {
          if (!event.native) return writer.push(event.chunk).map(sse).join('');
          relayed++;
          native = finalResponse(event.native.event, event.native.data) ?? native;
          return nativeEvent(event.native);
        },
        end: () => (relayed ? undefined : writer.end().map(sse).join('')),
        completedStatus: () => (native?.status === 'failed' ? 'partial' : undefined),
        fail: (err) => {
          const { body: errorBody } = toErrorResponse(err as ProviderError);
          const error = {
            code: String(errorBody.error.code ?? 'server_error'),
            message: errorBody.error.message,
          };
          // After the upstream's own events, the error event continues its sequence numbers.
          const events = relayed
            ? [{ type: 'error', sequence_number: relayed, ...error, param: null }]
            : writer.fail(error);
          return events.map(sse).join('');
        },
        usage: () => writer.usage ?? usageOf(native),
        settle: async () => {
          const stored = relayed ? native && asStored(native, body) : writer.response;
          if (stored)
            await Promise.resolve(save(stored)).catch((err) =>
              request.log.error({ err }, 'could not store the response'),
            );
        },
      },
    );
  }

  /** A native response's usage in the internal form. */
  function usageOf(response: ResponseObject | undefined) {
    const u = response?.usage;
    if (!u) return undefined;
    return {
      prompt_tokens: u.input_tokens,
      completion_tokens: u.output_tokens,
      total_tokens: u.total_tokens,
    };
  }

  const Params = Type.Object({ id: Type.String({ maxLength: 200 }) });

  app.get(
    '/v1/responses/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'A stored response (the caller’s own)',
        params: Params,
        response: { 200: ResponseSchema, ...openAiErrors },
      },
    },
    async (request) => {
      const stored = await deps.store.get(principalOf(request), request.params.id);
      if (!stored) throw new AppError('not_found', `Response with id '${request.params.id}' not found.`);
      return stored.response;
    },
  );

  app.delete(
    '/v1/responses/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Delete a stored response (the caller’s own)',
        params: Params,
        response: {
          200: Type.Object({ id: Type.String(), object: Type.Literal('response'), deleted: Type.Boolean() }),
          ...openAiErrors,
        },
      },
    },
    async (request) => {
      if (!(await deps.store.delete(principalOf(request), request.params.id)))
        throw new AppError('not_found', `Response with id '${request.params.id}' not found.`);
      return { id: request.params.id, object: 'response' as const, deleted: true };
    },
  );
}
