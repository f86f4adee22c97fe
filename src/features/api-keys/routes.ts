import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import { IdParams, PaginationQuery, page, toPage } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import type { Principal } from '../auth/principal.js';
import type { UserStore } from '../users/store.js';
import { type ApiKeyRow, type ApiKeyStore, toPublicApiKey } from './store.js';

const ApiKey = Type.Object(
  {
    id: Type.String(),
    user_id: Type.String(),
    name: Type.String(),
    prefix: Type.String({ description: 'the first characters of the key, to recognise it' }),
    expires_at: Type.Union([Type.String(), Type.Null()]),
    last_used_at: Type.Union([Type.String(), Type.Null()]),
    revoked_at: Type.Union([Type.String(), Type.Null()]),
    created_at: Type.String(),
    cache_responses: Type.Boolean({
      description: 'every request with this key may be served from the response cache',
    }),
  },
  { $id: 'ApiKey' },
);
const CreatedApiKey = Type.Intersect([
  Type.Ref('ApiKey'),
  Type.Object({ key: Type.String({ description: 'the secret key: shown only in this response' }) }),
]);
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};

/** A user sees only their own keys; someone else's key is "not found". Admins see all. */
function assertVisible(principal: Principal, key: ApiKeyRow | undefined): ApiKeyRow {
  if (!key || (principal.role !== 'admin' && key.user_id !== principal.userId)) throw notFound('API key');
  return key;
}

export async function apiKeyRoutes(
  fastify: FastifyInstance,
  deps: { apiKeys: ApiKeyStore; users: UserStore },
) {
  fastify.addSchema(ApiKey);
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['api keys'], security: bearerSecurity };

  app.post(
    '/api/keys',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Create an API key. The key itself is returned once; only its hash is stored.',
        body: Type.Object({
          name: Type.String({ minLength: 1, maxLength: 100 }),
          expires_in_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
          user_id: Type.Optional(Type.String({ description: 'admin only: create the key for this user' })),
          cache_responses: Type.Optional(
            Type.Boolean({
              description: 'opt every request into the response cache, not only temperature 0',
            }),
          ),
        }),
        response: { 201: CreatedApiKey, ...errors },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { name, expires_in_days, user_id, cache_responses } = request.body;
      let owner = principal.userId;
      if (user_id !== undefined && user_id !== principal.userId) {
        if (principal.role !== 'admin')
          throw new AppError('forbidden', 'only admins create keys for other users');
        if (!(await deps.users.findById(user_id))) throw notFound('user');
        owner = user_id;
      }
      if (!owner)
        throw new AppError('invalid_request', 'user_id is required with the master key', {
          param: 'user_id',
        });
      const expiresAt = expires_in_days
        ? new Date(Date.now() + expires_in_days * 86_400_000).toISOString()
        : null;
      const { row, key } = await deps.apiKeys.create({
        userId: owner,
        name,
        expiresAt,
        cacheResponses: cache_responses ?? false,
      });
      reply.code(201);
      return { ...toPublicApiKey(row), key };
    },
  );

  app.get(
    '/api/keys',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'List API keys: your own; admins may pass user_id, or all=true for every key',
        querystring: Type.Intersect([
          PaginationQuery,
          Type.Object({ user_id: Type.Optional(Type.String()), all: Type.Optional(Type.Boolean()) }),
        ]),
        response: { 200: page(Type.Ref('ApiKey')), ...errors },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { limit, after, user_id, all } = request.query;
      let userId: string | undefined = principal.userId ?? undefined;
      if (principal.role === 'admin' && (user_id || all)) userId = all ? undefined : user_id;
      else if (user_id && user_id !== principal.userId)
        throw new AppError('forbidden', 'only admins list other users’ keys');
      if (!userId && principal.role !== 'admin') throw new AppError('forbidden', 'no user');
      return toPage(await deps.apiKeys.list({ userId, limit: limit + 1, after }), limit, toPublicApiKey);
    },
  );

  app.get(
    '/api/keys/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'One API key',
        params: IdParams,
        response: { 200: Type.Ref('ApiKey'), ...errors },
      },
    },
    async (request) =>
      toPublicApiKey(assertVisible(principalOf(request), await deps.apiKeys.findById(request.params.id))),
  );

  app.delete(
    '/api/keys/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Revoke an API key: it stops working at once',
        params: IdParams,
        response: { 200: Type.Ref('ApiKey'), ...errors },
      },
    },
    async (request) => {
      assertVisible(principalOf(request), await deps.apiKeys.findById(request.params.id));
      return toPublicApiKey((await deps.apiKeys.revoke(request.params.id))!);
    },
  );
}
