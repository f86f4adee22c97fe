import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Metrics } from '../../metrics/registry.js';
import { bearerSecurity } from '../../plugins/auth.js';
import { toErrorResponse } from '../../plugins/error-handler.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { type ChatCompletionRequest, NATIVE_RESPONSE } from '../../providers/types.js';
import { protocolIngress } from '../ingress/call.js';
import { openAiErrors, validateWithoutCoercion } from '../openai-v1/schemas.js';
import type { UsageRecorder } from '../usage/store.js';
import { CompletionBody, type CompletionRequest, CompletionResponse } from './schemas.js';
import { fromChunk, fromCompletion, type TextCompletion, toInternalRequest } from './translate.js';

export interface CompletionsDeps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  metrics?: Metrics | undefined;
}

const notSupported = (model: string) =>
  new ProviderError(
    `The model \`${model}\` is not served by an upstream with legacy completions: /v1/completions passes through to OpenAI-compatible deployments that serve /completions (use /v1/chat/completions).`,
    {
      provider: 'colloquy',
      status: 400,
      code: 'model_not_supported',
      type: 'invalid_request_error',
      param: 'model',
      retryable: false,
    },
  );

/**
 * POST /v1/completions, OpenAI's legacy text completions (issue 20: fill-in-the-middle autocomplete).
 * Passed through to the model's deployments when every one of them serves the endpoint (OpenAI, and the
 * presets whose servers do), a 400 `model_not_supported` otherwise: a prompt-continuation model has no
 * faithful translation onto chat. Same auth, limits, budgets, guardrails, routing and ledger (protocol
 * `completions`) as chat; not cached.
 */
export async function completionsRoutes(fastify: FastifyInstance, deps: CompletionsDeps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const ingress = protocolIngress(fastify, deps, { protocol: 'completions', api: 'completions' });

  app.post(
    '/v1/completions',
    {
      preHandler: app.authenticate,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        tags: ['openai'],
        security: bearerSecurity,
        summary:
          'Create a legacy text completion (OpenAI-compatible; passed through to upstreams that serve it; `stream: true` answers with server-sent events)',
        body: CompletionBody,
        response: { 200: CompletionResponse, ...openAiErrors },
      },
    },
    async (request, reply) => {
      const body = request.body as CompletionRequest;
      // An unknown model is the gateway's 404; a known one no deployment can pass through, a 400.
      if (
        deps.gateway.hasModel(body.model) &&
        deps.gateway.nativeSupport?.(body.model, 'completions') !== 'all'
      )
        throw notSupported(body.model);
      const internal = toInternalRequest(body);
      if (body.stream) return streamCompletion(request, reply, body, internal);
      const { completion } = await ingress.complete(request, reply, body.model, internal);
      // The upstream's answer as it came; translated back only when the guardrails rewrote it.
      const native = completion[NATIVE_RESPONSE] as TextCompletion | undefined;
      return native ?? fromCompletion(completion, body.model);
    },
  );

  function streamCompletion(
    request: FastifyRequest,
    reply: FastifyReply,
    body: CompletionRequest,
    internal: ChatCompletionRequest,
  ) {
    // The upstream is always asked for usage (for the ledger); a client that did not ask never sees it.
    const includeUsage = body.stream_options?.include_usage === true;
    return ingress.stream(
      request,
      reply,
      { model: body.model, internal },
      {
        event: ({ chunk, native }) =>
          chunk.choices.length === 0 && !includeUsage
            ? ''
            : `data: ${native?.data ?? JSON.stringify(fromChunk(chunk, body.model))}\n\n`,
        end: () => 'data: [DONE]\n\n',
        // After the first byte the error travels in-band, as on /v1/chat/completions, then [DONE].
        fail: (err) => {
          const { body: errorBody } = toErrorResponse(err as ProviderError);
          return `data: ${JSON.stringify({ error: errorBody.error })}\n\ndata: [DONE]\n\n`;
        },
      },
    );
  }
}
