import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import type { Cache, CacheKey } from '../../cache/cache.js';
import { AppError } from '../../core/errors.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { roundUsd } from '../usage/prices.js';
import type { BudgetService, BudgetStatus } from './budgets.js';
import type { LimitOverrideStore } from './overrides.js';
import { LIMIT_NAMES } from './tables.js';

const Scope = Type.Union([Type.Literal('key'), Type.Literal('user')]);
const Period = Type.Union([Type.Literal('day'), Type.Literal('month')]);
const SubjectParams = Type.Object({ scope: Scope, subject_id: Type.String({ minLength: 1, maxLength: 64 }) });
const LimitName = Type.Union(LIMIT_NAMES.map((n) => Type.Literal(n)));
const Usd = Type.Number({ description: 'USD, rounded to 1e-10' });

/** One casing across /api (snake_case, like OpenAI's): issue 19, item 20. */
const BudgetStatusSchema = Type.Object({
  scope: Scope,
  subject_id: Type.String(),
  period: Period,
  limit_usd: Type.Union([Usd, Type.Null()], { description: 'null: no USD limit' }),
  limit_tokens: Type.Union([Type.Integer(), Type.Null()], { description: 'null: no token limit' }),
  spent_usd: Usd,
  spent_tokens: Type.Integer(),
  reserved_usd: Type.Number({ description: 'USD held by requests in progress (their worst cases)' }),
  reserved_tokens: Type.Integer(),
  window: Type.Object({
    id: Type.String({ description: '2025-01-31 for a day, 2025-01 for a month (UTC)' }),
    start: Type.String({ description: 'inclusive, ISO 8601' }),
    end: Type.String({ description: 'exclusive, ISO 8601: when the budget resets' }),
  }),
});

function budgetStatusJson(s: BudgetStatus): Static<typeof BudgetStatusSchema> {
  return {
    scope: s.scope,
    subject_id: s.subjectId,
    period: s.period,
    limit_usd: s.limitUsd === null ? null : roundUsd(s.limitUsd),
    limit_tokens: s.limitTokens,
    spent_usd: roundUsd(s.spentUsd),
    spent_tokens: s.spentTokens,
    reserved_usd: roundUsd(s.reservedUsd),
    reserved_tokens: s.reservedTokens,
    window: { id: s.window.id, start: s.window.start, end: s.window.end },
  };
}

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
  /** A budget or override for a key or user that does not exist would silently apply to nothing. */
  const assertSubject = async (scope: 'key' | 'user', subjectId: string) => {
    if (!(await deps.budgets.store.subjectExists(scope, subjectId)))
      throw new AppError('not_found', scope === 'key' ? 'API key not found' : 'user not found', {
        param: 'subject_id',
      });
  };

  app.get(
    '/api/budgets/:scope/:subject_id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Budgets of a key or user with spend so far in the current window',
        description:
          'A request reserves its worst case (prompt plus max_tokens, or 4,096 output tokens without it) until ' +
          'it settles to its actual cost: `reserved_*` is what requests in progress hold. Owners see their own.',
        params: SubjectParams,
        response: { 200: Type.Object({ data: Type.Array(BudgetStatusSchema) }), ...errors },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { scope, subject_id } = request.params;
      const own = scope === 'user' ? subject_id === principal.userId : subject_id === principal.apiKeyId;
      if (principal.role !== 'admin' && !own) throw new AppError('not_found', 'budget not found');
      const statuses = await deps.budgets.status({ scope, subjectId: subject_id });
      return { data: statuses.map(budgetStatusJson) };
    },
  );

  app.put(
    '/api/budgets/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Set a spend budget (USD and/or tokens) per day or month (admin)',
        description:
          'Replaces the budget of the key or user for the period. `limit_usd` and `limit_tokens` are each ' +
          'optional: null or absent means no limit on that dimension. Applies on every replica at once.',
        params: SubjectParams,
        body: Type.Object(
          {
            period: Period,
            limit_usd: Type.Optional(
              Type.Union([Type.Number({ minimum: 0 }), Type.Null()], { description: 'null: no USD limit' }),
            ),
            limit_tokens: Type.Optional(
              Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
                description: 'null: no token limit',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const { scope, subject_id } = request.params;
      await assertSubject(scope, subject_id);
      const { period, limit_usd = null, limit_tokens = null } = request.body;
      await deps.budgets.set({
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

  app.get(
    '/api/limits/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Rate-limit overrides of a key or user (admin); limits not listed take the defaults',
        params: SubjectParams,
        response: {
          200: Type.Object({
            data: Type.Array(Type.Object({ limit: LimitName, value: Type.Integer() })),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const { scope, subject_id } = request.params;
      await assertSubject(scope, subject_id);
      const overrides = await deps.overrides.list(scope, subject_id);
      return { data: overrides.map((o) => ({ limit: o.limitName, value: o.value })) };
    },
  );

  app.put(
    '/api/limits/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Override a rate limit for a key or user (admin). Negative: unlimited; 0: nothing allowed.',
        description:
          'Applies on every replica at once (announced through Redis; a replica that missed the announcement ' +
          'picks it up within 5 s). tokens_per_minute checks the prompt plus the request’s max_tokens when it ' +
          'sets one (no output is reserved otherwise; actual tokens count when the reply ends); a request ' +
          'that could never fit gets 413 exceeds_token_limit.',
        params: SubjectParams,
        body: Type.Object({ limit: LimitName, value: Type.Integer() }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const { scope, subject_id } = request.params;
      await assertSubject(scope, subject_id);
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

  app.delete(
    '/api/limits/:scope/:subject_id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...common,
        summary: 'Remove rate-limit overrides of a key or user (admin): the defaults apply again',
        params: SubjectParams,
        querystring: Type.Object({ limit: Type.Optional(LimitName) }),
        response: { 200: Type.Object({ removed: Type.Integer() }), ...errors },
      },
    },
    async (request) => ({
      removed: await deps.overrides.remove(
        request.params.scope,
        request.params.subject_id,
        request.query.limit,
      ),
    }),
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
