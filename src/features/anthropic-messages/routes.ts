import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { ResponseCache } from '../../cache/response-cache.js';
import type { Metrics } from '../../metrics/registry.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { countPromptTokens, countTextTokens, estimatePromptTokens } from '../../providers/tokens.js';
import {
  type ChatCompletion,
  type ChatCompletionRequest,
  NATIVE_REQUEST,
  NATIVE_RESPONSE,
} from '../../providers/types.js';
import { nativeEvent, protocolIngress } from '../ingress/call.js';
import { type CachePlan, callerOf, planCache } from '../ingress/lifecycle.js';
import { validateWithoutCoercion } from '../openai-v1/schemas.js';
import type { UsageRecorder } from '../usage/store.js';
import { toAnthropicError } from './errors.js';
import { anthropicMessageJson, type toAnthropicMessage } from './from-internal.js';
import {
  AnthropicErrorSchema,
  CountTokensBody,
  CountTokensResponse,
  MessageResponse,
  MessagesBody,
  type MessagesRequest,
} from './schemas.js';
import { MessagesStreamWriter, sse } from './stream-writer.js';
import { nativeMessagesRequest, toInternalMessages, toInternalRequest } from './to-internal.js';

export interface AnthropicMessagesDeps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  metrics?: Metrics | undefined;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
}

type AnthropicMessage = ReturnType<typeof toAnthropicMessage>;

const errors = Object.fromEntries(
  [400, 401, 403, 404, 413, 429, 500, 529].map((status) => [status, Type.Ref('AnthropicError')]),
);

/**
 * Anthropic's Messages API (issue 20): what Claude Code and the Anthropic SDKs call. Any routed model
 * answers; an Anthropic deployment gets the client's body as it came (only `model` replaced), every other
 * upstream a translation. Same auth, limits, budgets, ledger and metrics as /v1/chat/completions.
 */
export async function anthropicMessagesRoutes(fastify: FastifyInstance, deps: AnthropicMessagesDeps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.addSchema(AnthropicErrorSchema);
  // This plugin's own error handler (Fastify scopes it to these routes): Anthropic's shape, not OpenAI's.
  // Load shedding and draining refusals from the root hooks come here too, as 529 overloaded_error.
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const { status, body, headers } = toAnthropicError(err, request.id);
    if (status >= 500 && !(err instanceof ProviderError)) request.log.error({ err }, 'request failed');
    else request.log.info({ type: body.error.type, status }, body.error.message);
    return reply.code(status).headers(headers).send(body);
  });
  const security: { [scheme: string]: string[] }[] = [{ apiKeyHeader: [] }, { bearerAuth: [] }];
  const common = { tags: ['anthropic'], security };
  const ingress = protocolIngress(fastify, deps, { protocol: 'messages', api: 'messages' });
  // Where a model name routes is fixed for the process's life (providers and the routing file are read at
  // start), so each name is resolved once, not on every request; bounded, since names come from clients.
  const anthropicOnly = new Map<string, boolean>();
  const onlyAnthropic = (model: string) => {
    let only = anthropicOnly.get(model);
    if (only === undefined) {
      const kinds = deps.gateway.providerKinds?.(model) ?? [];
      only = kinds.length > 0 && kinds.every((kind) => kind === 'anthropic');
      if (anthropicOnly.size >= 1000) anthropicOnly.clear();
      anthropicOnly.set(model, only);
    }
    return only;
  };

  app.post(
    '/v1/messages',
    {
      // Before the body is parsed: an unauthenticated request is refused as such (401), whatever it sends.
      onRequest: app.authenticateAnyKey,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        ...common,
        summary:
          'Create a message (Anthropic Messages API; `stream: true` answers with Anthropic’s server-sent events)',
        body: MessagesBody,
        response: { 200: MessageResponse, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body as MessagesRequest;
      const passThroughOnly = onlyAnthropic(body.model);
      const internal = toInternalRequest(body, request.headers, { passThroughOnly });
      // Translated answers are cached like chat completions (one entry per internal request); an Anthropic
      // deployment's own answer carries what the internal format does not, so it is never cached.
      const cache = passThroughOnly ? undefined : planCache(deps.responses, request, internal);
      if (body.stream) return streamMessage(request, reply, body, internal, cache);
      // Most requests have no cache to read: no call, no promise to wait for.
      const hit = cache?.read ? await ingress.cachedCompletion(request, reply, body.model, cache) : undefined;
      if (hit) return messageJson(reply, hit.completion, body.model);
      const { completion } = await ingress.complete(request, reply, body.model, internal, cache);
      // An Anthropic deployment's own answer as it came; every other upstream's, translated.
      const native = completion[NATIVE_RESPONSE] as AnthropicMessage | undefined;
      return native ?? messageJson(reply, completion, body.model);
    },
  );

  /**
   * A translated answer as JSON text, which Fastify sends as it is. Its response schema lets every field
   * through (`additionalProperties`): its serializer wrote the same fields (`stop_sequence` after `usage`),
   * one by one, leaving ~2 KiB of garbage a request (issue 26).
   */
  function messageJson(reply: FastifyReply, completion: ChatCompletion, model: string): AnthropicMessage {
    reply.header('content-type', 'application/json; charset=utf-8');
    // The route's declared answer, already written out (the type is what a client reads from the text).
    return anthropicMessageJson(completion, model) as unknown as AnthropicMessage;
  }

  function streamMessage(
    request: FastifyRequest,
    reply: FastifyReply,
    body: MessagesRequest,
    internal: ChatCompletionRequest,
    cache: CachePlan | undefined,
  ) {
    // message_start carries the prompt's size, as Anthropic's does (clients show context use from it): an
    // estimate here (no tokenizer, a few µs); message_delta carries the upstream's own count at the end.
    const writer = new MessagesStreamWriter(body.model, {
      inputTokens: estimatePromptTokens(internal.messages),
    });
    let passThrough = false;
    return ingress.stream(
      request,
      reply,
      { model: body.model, internal, cache },
      {
        event: (event) => {
          if (!event.native) return writer.push(event.chunk).map(sse).join('');
          // An Anthropic upstream's own event, relayed as it came (and never cached: see above).
          passThrough = true;
          return nativeEvent(event.native);
        },
        end: () => (passThrough ? undefined : writer.finish().map(sse).join('')),
        // After the first byte there is no status left to change: Anthropic's `error` event ends the stream.
        fail: (err) =>
          sse({ type: 'error', error: toAnthropicError(err as ProviderError, request.id).body.error }),
      },
    );
  }

  app.post(
    '/v1/messages/count_tokens',
    {
      // Before the body is parsed: an unauthenticated request is refused as such (401), whatever it sends.
      onRequest: app.authenticateAnyKey,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        ...common,
        summary:
          'Count the input tokens of a Messages request: the Anthropic upstream’s own count when the model routes to one, Colloquy’s estimate otherwise',
        body: CountTokensBody,
        response: { 200: CountTokensResponse, ...errors },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (!deps.gateway.hasModel(body.model)) {
        throw new ProviderError(
          `The model \`${body.model}\` does not exist or you do not have access to it.`,
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
      // An Anthropic deployment counts the client's request itself (its tokenizer, images, tools and all):
      // nothing is translated for it.
      const counted = await deps.gateway.countTokens?.({
        body: {
          model: body.model,
          messages: [],
          [NATIVE_REQUEST]: nativeMessagesRequest(body, request.headers),
        },
        requestId: request.id,
        signal: ingress.signalFor(reply).signal,
        caller: callerOf(request),
      });
      if (counted) {
        reply.header('x-colloquy-deployment', counted.route.deployment);
        return { input_tokens: counted.inputTokens };
      }
      const messages = toInternalMessages(body);
      const prompt = await countPromptTokens(messages);
      const tools = body.tools?.length ? await countTextTokens(JSON.stringify(body.tools)) : 0;
      return { input_tokens: prompt + tools };
    },
  );
}
