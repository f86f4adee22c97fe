import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Cache, CacheKey } from '../../cache/cache.js';
import { AppError } from '../../core/errors.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import type { BudgetService } from './budgets.js';
import type { LimitOverrideStore } from './overrides.js';
import { LIMIT_NAMES } from './tables.js';

const Scope = Type.Union([Type.Literal('key'), Type.Literal('user')]);
const Period = Type.Union([Type.Literal('day'), Type.Literal('month')]);
const SubjectParams = Type.Object({ scope: Scope, subject_id: Type.String({ minLength: 1, maxLength: 64 }) });
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};

/** Admin controls: budgets, per-key/user limit overrides, cache invalidation; budget status for owners. */
export async function limitsRoutes(
  fastify: FastifyInstance,
  deps: { budgets: BudgetService; overrides: LimitOverrideStore; cache: Cache },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['limits'], security: bearerSecurity };

  app.get(
    '/api/budgets/:scope/:subject_id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Budgets of a key or user with spend so far in the current window',
        params: SubjectParams,
        response: {
          200: Type.Object({
            data: Type.Array(
              Type.Object(
                {
                  period: Period,
                  limitUsd: Type.Union([Type.Number(), Type.Null()]),
                  spentUsd: Type.Number(),
                },
                { additionalProperties: true },
              ),
            ),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { scope, subject_id } = request.params;
      const own = scope === 'user' ? subject_id === principal.userId : subject_id === principal.apiKeyId;
      if (principal.role !== 'admin' && !own) throw new AppError('not_found', 'budget not found');
      return { data: await deps.budgets.status({ scope, subjectId: subject_id }) };
    },
  );

  app.put(
    '/api/budgets/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Set a spend budget (USD and/or tokens) per day or month (admin)',
        params: SubjectParams,
        body: Type.Object(
          {
            period: Period,
            limit_usd: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
            limit_tokens: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
          },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const { scope, subject_id } = request.params;
      const { period, limit_usd, limit_tokens } = request.body;
      await deps.budgets.store.set({
        scope,
        subjectId: subject_id,
        period,
        limitUsd: limit_usd,
        limitTokens: limit_tokens,
      });
      reply.code(204);
      return null;
    },
  );

  app.delete(
    '/api/budgets/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Remove budgets of a key or user (admin)',
        params: SubjectParams,
        querystring: Type.Object({ period: Type.Optional(Period) }),
        response: { 200: Type.Object({ removed: Type.Integer() }), ...errors },
      },
    },
    async (request) => ({
      removed: await deps.budgets.store.remove(
        request.params.scope,
        request.params.subject_id,
        request.query.period,
      ),
    }),
  );

  app.put(
    '/api/limits/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Override a rate limit for a key or user (admin). Negative: unlimited; 0: nothing allowed.',
        params: SubjectParams,
        body: Type.Object(
          { limit: Type.Union(LIMIT_NAMES.map((n) => Type.Literal(n))), value: Type.Integer() },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const { scope, subject_id } = request.params;
      await deps.overrides.set({
        scope,
        subjectId: subject_id,
        limitName: request.body.limit,
        value: request.body.value,
      });
      reply.code(204);
      return null;
    },
  );

  app.post(
    '/api/admin/cache/invalidate',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Drop cached entries by key or glob pattern, e.g. responses:key:key_123:* (admin)',
        body: Type.Object(
          { pattern: Type.String({ minLength: 3, maxLength: 512, pattern: '^[a-z]+:' }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ removed: Type.Integer(), complete: Type.Boolean() }), ...errors },
      },
    },
    async (request) => {
      try {
        return await deps.cache.invalidate(request.body.pattern as CacheKey);
      } catch (err) {
        throw new AppError('validation_error', (err as Error).message, { param: 'pattern' });
      }
    },
  );
}
