import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import type { ResponseCache } from '../../cache/response-cache.js';
import { AppError } from '../../core/errors.js';
import { bearerSecurity } from '../../plugins/auth.js';
import type { ChatGateway } from '../../providers/router/types.js';
import type { EmbeddingRequest, EmbeddingResponse } from '../../providers/types.js';
import { protocolIngress } from '../ingress/call.js';
import { planEmbeddingCache } from '../ingress/lifecycle.js';
import { estimateEmbeddingTokens } from '../limits/limited-gateway.js';
import { openAiErrors, validateWithoutCoercion } from '../openai-v1/schemas.js';
import type { UsageRecorder } from '../usage/store.js';
import { inEncoding } from './encoding.js';
import { EmbeddingBody, EmbeddingResponseSchema } from './schemas.js';

export interface EmbeddingsDeps {
  gateway: ChatGateway;
  usage: UsageRecorder;
  /** Absent when response caching is off (RESPONSE_CACHE_TTL_SECONDS=0). */
  responses?: ResponseCache | undefined;
}

/**
 * POST /v1/embeddings (issue 20): routed like chat (aliases, weights, retries, fallbacks, breakers) over the
 * deployments whose provider has an embeddings API, behind the same rate limits and budgets (reserved, then
 * settled on the input tokens), cached on the exact input, and one ledger row per request (protocol
 * `embeddings`).
 */
export async function embeddingsRoutes(fastify: FastifyInstance, deps: EmbeddingsDeps) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const ingress = protocolIngress(fastify, deps, { protocol: 'embeddings', api: 'embeddings' });

  app.post(
    '/v1/embeddings',
    {
      preHandler: app.authenticate,
      validatorCompiler: validateWithoutCoercion,
      schema: {
        tags: ['openai'],
        security: bearerSecurity,
        summary:
          'Create embeddings (OpenAI-compatible: a text, texts or token ids; `encoding_format` float or base64; `dimensions`)',
        body: EmbeddingBody,
        response: { 200: EmbeddingResponseSchema, ...openAiErrors },
      },
    },
    async (request, reply) => {
      const body = request.body as EmbeddingRequest;
      const embed = deps.gateway.embed;
      if (!embed) throw new AppError('invalid_request', 'embeddings are not available');
      const format = body.encoding_format ?? 'float';
      const cache = planEmbeddingCache(deps.responses, request, body);
      const hit = await ingress.fromCache(
        request,
        reply,
        body.model,
        cache,
        (responses, key) => responses.getEmbeddings(key),
        (cached) => usageOf(cached.response, body),
      );
      if (hit) return inEncoding(hit.response, format);
      const result = await ingress.call(
        request,
        reply,
        body.model,
        (context) => embed.call(deps.gateway, { body, ...context }),
        (r) => usageOf(r.response, body),
      );
      const response = inEncoding(result.response, format);
      if (cache && deps.responses) {
        reply.header('x-cache', 'miss');
        void deps.responses.putEmbeddings(cache.key, response, { route: result.route });
      }
      return response;
    },
  );
}

/** The input tokens the upstream counted (estimated when it did not say); embeddings produce no output tokens. */
function usageOf(response: EmbeddingResponse, body: EmbeddingRequest) {
  const prompt = response.usage?.prompt_tokens ?? estimateEmbeddingTokens(body.input);
  return { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt };
}
