import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import type { Db } from '../../db/database.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { usageReport } from '../limits/rollups.js';

const Day = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$', description: 'YYYY-MM-DD (UTC)' });
const Totals = Type.Object({
  key: Type.Union([Type.String(), Type.Null()], { description: 'the key id, user id, model or day' }),
  requests: Type.Integer(),
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  cost_usd: Type.Number(),
  cached_requests: Type.Integer(),
  errors: Type.Integer(),
});
const errors = { 400: Type.Ref('Error'), 401: Type.Ref('Error'), 403: Type.Ref('Error') };

/** Spend and usage so far, from the daily roll-ups (today live). A user sees their own; admins everyone's. */
export async function usageRoutes(fastify: FastifyInstance, deps: { db: Db }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/usage',
    {
      preHandler: app.authenticate,
      schema: {
        tags: ['usage'],
        security: bearerSecurity,
        summary: 'Usage and spend for a date range, grouped by day, model, API key or user',
        querystring: Type.Object({
          from: Type.Optional(Day),
          to: Type.Optional(Day),
          group_by: Type.Union(
            ['day', 'model', 'api_key', 'user'].map((g) => Type.Literal(g)),
            { default: 'day' },
          ),
          user_id: Type.Optional(Type.String({ description: 'admins: one user' })),
          api_key_id: Type.Optional(Type.String()),
          model: Type.Optional(Type.String()),
        }),
        response: {
          200: Type.Object({ from: Day, to: Day, group_by: Type.String(), data: Type.Array(Totals) }),
          ...errors,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const q = request.query;
      const today = new Date().toISOString().slice(0, 10);
      const to = q.to ?? today;
      const from =
        q.from ?? new Date(Date.parse(`${to}T00:00:00Z`) - 29 * 86_400_000).toISOString().slice(0, 10);
      if (from > to)
        throw new AppError('validation_error', '`from` must not be after `to`', { param: 'from' });
      let userId = q.user_id;
      if (principal.role !== 'admin') {
        if (userId && userId !== principal.userId)
          throw new AppError('forbidden', 'only admins see other users’ usage');
        userId = principal.userId ?? undefined;
      }
      const data = await usageReport(deps.db, {
        from,
        to,
        groupBy: q.group_by as 'day' | 'model' | 'api_key' | 'user',
        userId,
        apiKeyId: q.api_key_id,
        model: q.model,
      });
      return { from, to, group_by: q.group_by, data };
    },
  );
}
