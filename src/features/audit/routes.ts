import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Db } from '../../db/database.js';
import { bearerSecurity } from '../../plugins/auth.js';
import type { AuditWriter } from './writer.js';

const AuditEvent = Type.Object({
  id: Type.String(),
  created_at: Type.String(),
  action: Type.String(),
  outcome: Type.String(),
  status_code: Type.Integer(),
  actor_user_id: Type.Union([Type.String(), Type.Null()]),
  actor_email: Type.Union([Type.String(), Type.Null()], {
    description: 'the acting user’s email (null: a key, the master key, or no user)',
  }),
  actor_key_id: Type.Union([Type.String(), Type.Null()]),
  actor_via: Type.Union([Type.String(), Type.Null()]),
  target_id: Type.Union([Type.String(), Type.Null()]),
  subject: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  request_id: Type.Union([Type.String(), Type.Null()]),
});

export async function auditRoutes(fastify: FastifyInstance, deps: { db: Db; writer: AuditWriter }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/admin/audit',
    {
      preHandler: app.requireAdmin,
      schema: {
        tags: ['admin'],
        security: bearerSecurity,
        summary: 'The audit trail, newest first (admin)',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
          before: Type.Optional(Type.String({ description: 'an event id: older events only' })),
          action: Type.Optional(Type.String()),
          actor_user_id: Type.Optional(Type.String()),
        }),
        response: {
          200: Type.Object({ data: Type.Array(AuditEvent) }),
          401: Type.Ref('Error'),
          403: Type.Ref('Error'),
        },
      },
    },
    async (request) => {
      const q = request.query;
      // Events are written in batches a few ms late: this replica's are written first, so they show.
      await deps.writer.flush();
      let query = deps.db
        .selectFrom('audit_events')
        .leftJoin('users', 'users.id', 'audit_events.actor_user_id')
        .selectAll('audit_events')
        .select('users.email as actor_email')
        .orderBy('audit_events.id', 'desc')
        .limit(q.limit);
      if (q.before) query = query.where('audit_events.id', '<', q.before);
      if (q.action) query = query.where('action', '=', q.action);
      if (q.actor_user_id) query = query.where('actor_user_id', '=', q.actor_user_id);
      return { data: await query.execute() };
    },
  );
}
