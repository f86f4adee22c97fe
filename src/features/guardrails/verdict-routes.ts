import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import type { Db } from '../../db/database.js';
import { bearerSecurity } from '../../plugins/auth.js';
import { type GuardrailEventRecorder, withGuardrailEvents } from './events.js';

/**
 * `GET /api/guardrails/verdicts?from=&to=` (admin): how many verdicts each guardrail gave, by stage and action,
 * over a range of UTC days (issue 22: verdicts on "the usage pages of the console"). Counted by the database
 * (one grouped query over `guardrail_events`, its created_at index bounding the range).
 */
export async function guardrailVerdictRoutes(
  fastify: FastifyInstance,
  deps: { db: Db; recorder?: GuardrailEventRecorder | undefined },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/guardrails/verdicts',
    {
      preHandler: app.requireAdmin,
      schema: {
        tags: ['guardrails'],
        security: bearerSecurity,
        summary: 'Guardrail verdicts per guardrail, stage and action over a range of UTC days (admin)',
        querystring: Type.Object({
          from: Type.String({ format: 'date', description: 'first day, inclusive (UTC)' }),
          to: Type.String({ format: 'date', description: 'last day, inclusive (UTC)' }),
        }),
        response: {
          200: Type.Object({
            total: Type.Integer(),
            data: Type.Array(
              Type.Object({
                guardrail: Type.String(),
                stage: Type.String(),
                action: Type.String({
                  description: 'block, redact, mutate, mask, refer, flag, log or error',
                }),
                verdicts: Type.Integer(),
              }),
            ),
          }),
          400: Type.Ref('Error'),
          401: Type.Ref('Error'),
          403: Type.Ref('Error'),
        },
      },
    },
    async (request) => {
      const { from, to } = request.query;
      if (from > to) throw new AppError('invalid_request', 'from is after to', { param: 'from' });
      // Verdicts are written in batches a second late: this replica's are written first, so they show.
      await deps.recorder?.flush();
      const rows = await withGuardrailEvents(deps.db)
        .selectFrom('guardrail_events')
        .select(['guardrail', 'stage', 'action', (eb) => eb.fn.countAll<number | string>().as('verdicts')])
        .where('created_at', '>=', `${from}T00:00:00`)
        .where('created_at', '<', `${to}T99`)
        .groupBy(['guardrail', 'stage', 'action'])
        .orderBy('guardrail')
        .orderBy('stage')
        .orderBy('action')
        .execute();
      const data = rows.map((r) => ({ ...r, verdicts: Number(r.verdicts) }));
      return { total: data.reduce((n, d) => n + d.verdicts, 0), data };
    },
  );
}
