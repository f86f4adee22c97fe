import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import type { Db } from '../../db/database.js';
import { IdParams, PaginationQuery, page, toPage } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import type { Principal } from '../auth/principal.js';
import { keyLimits } from '../limits/key-limits.js';
import type { AccountMail } from '../mail/account-mail.js';
import { pickLocale } from '../mail/templates.js';
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
    allowed_models: Type.Union([Type.Array(Type.String()), Type.Null()], {
      description: 'the model names the key may call (403 model_not_allowed for others); null: every model',
    }),
    budgets: Type.Optional(
      Type.Array(
        Type.Object({
          period: Type.Union([Type.Literal('day'), Type.Literal('month')]),
          limit_usd: Type.Union([Type.Number(), Type.Null()]),
          limit_tokens: Type.Union([Type.Integer(), Type.Null()]),
        }),
        { description: 'in lists: the key’s own budgets (PUT /api/budgets/key/{id})' },
      ),
    ),
    owner_email: Type.Optional(
      Type.String({
        description: 'in lists: the email of the key’s owner (user_id), so a list names owners alone',
      }),
    ),
    rate_limits: Type.Optional(
      Type.Record(Type.String(), Type.Integer(), {
        description:
          'in lists: the key’s own rate-limit overrides (PUT /api/limits/key/{id}); others take the defaults',
      }),
    ),
  },
  { $id: 'ApiKey' },
);
const AllowedModels = Type.Union(
  [Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 100 }), Type.Null()],
  { description: 'restrict the key to these model names; null: every model' },
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
  deps: {
    apiKeys: ApiKeyStore;
    users: UserStore;
    /** Lists show each key's budgets and rate-limit overrides, read from here. */
    db?: Db | undefined;
    /** Mails the key's owner when a key is created or revoked (when mail is configured). */
    notices?: AccountMail | undefined;
  },
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
          allowed_models: Type.Optional(AllowedModels),
        }),
        response: { 201: CreatedApiKey, ...errors },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { name, expires_in_days, user_id, cache_responses, allowed_models } = request.body;
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
        allowedModels: allowed_models ?? null,
      });
      await deps.notices?.notify(owner, 'api_key_created', pickLocale(request.headers['accept-language']), {
        keyName: row.name,
        keyPrefix: row.prefix,
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
      const listed = toPage(
        await deps.apiKeys.list({ userId, limit: limit + 1, after }),
        limit,
        toPublicApiKey,
      );
      const emails = await deps.users.emailsOf(listed.data.map((k) => k.user_id));
      const limits = deps.db
        ? await keyLimits(
            deps.db,
            listed.data.map((k) => k.id),
          )
        : undefined;
      return {
        ...listed,
        data: listed.data.map((k) => ({ ...k, owner_email: emails.get(k.user_id), ...limits?.get(k.id) })),
      };
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

  app.patch(
    '/api/keys/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Change which models a key may call (admin); it applies on every replica at once',
        params: IdParams,
        body: Type.Object({ allowed_models: AllowedModels }, { additionalProperties: false }),
        response: { 200: Type.Ref('ApiKey'), ...errors },
      },
    },
    async (request) => {
      if (!(await deps.apiKeys.findById(request.params.id))) throw notFound('API key');
      return toPublicApiKey(
        (await deps.apiKeys.setAllowedModels(request.params.id, request.body.allowed_models))!,
      );
    },
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
      const before = assertVisible(principalOf(request), await deps.apiKeys.findById(request.params.id));
      const revoked = (await deps.apiKeys.revoke(request.params.id))!;
      // Only the revocation itself is announced, not a repeated DELETE of a key already revoked.
      if (!before.revoked_at)
        await deps.notices?.notify(
          before.user_id,
          'api_key_revoked',
          pickLocale(request.headers['accept-language']),
          {
            keyName: before.name,
            keyPrefix: before.prefix,
          },
        );
      return toPublicApiKey(revoked);
    },
  );
}
