import { setTimeout as sleep } from 'node:timers/promises';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import { bearerSecurity } from '../../plugins/auth.js';
import {
  type ConversationApi,
  callerOf,
  closeOnRevocation,
  countStream,
  errorResponses,
} from './context-deps.js';
import { GenerationEventsHeaders, GenerationParams } from './schemas.js';
import { openEventStream } from './sse.js';
import { toPublicMessage } from './store.js';

const GenerationSchema = Type.Object({
  id: Type.String(),
  conversation_id: Type.String(),
  message_id: Type.String(),
  user_message_id: Type.Union([Type.String(), Type.Null()]),
  kind: Type.String({ description: 'reply, regenerate or continue' }),
  model: Type.String(),
  status: Type.String({ description: 'running, complete, partial or error' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'why it stopped early (a code)' }),
  last_event_id: Type.Union([Type.Integer(), Type.Null()]),
  created_at: Type.String(),
  finished_at: Type.Union([Type.String(), Type.Null()]),
});

const CancelResult = Type.Object({
  generation_id: Type.String(),
  status: Type.String({
    description: 'how the generation ended, or `cancelling` when another server runs it',
  }),
  message: Type.Union([Type.Ref('Message'), Type.Null()]),
});

/** Generations: status, reconnection to their events, and cancellation — from any replica. */
export async function generationRoutes(fastify: FastifyInstance, api: ConversationApi) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['generations'], security: bearerSecurity };
  const { feed } = api;

  async function owned(userId: string, id: string) {
    const row = await feed.findOwned(userId, id);
    if (!row) throw notFound('generation');
    return row;
  }

  app.get(
    '/api/generations/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'A generation’s state',
        params: GenerationParams,
        response: { 200: GenerationSchema, ...errorResponses },
      },
    },
    async (request) => {
      const row = await owned(callerOf(request).userId, request.params.id);
      return { ...row, last_event_id: row.last_event_id };
    },
  );

  app.get(
    '/api/generations/:id/events',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary:
          'Reconnect to a generation: its events after Last-Event-ID (or `after`), then the live rest, as server-sent events',
        params: GenerationParams,
        headers: GenerationEventsHeaders,
        querystring: Type.Object({
          after: Type.Optional(Type.Integer({ minimum: 0, description: 'like Last-Event-ID' })),
        }),
        response: {
          200: Type.String({
            description:
              'text/event-stream: the events after Last-Event-ID (an empty one counts as none), then the live ' +
              'rest; `event: closed` (no id) when the credential is revoked or expires',
          }),
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const row = await owned(callerOf(request).userId, request.params.id);
      // An empty Last-Event-ID is what EventSource sends before it has seen an id: the same as none.
      const header = request.headers['last-event-id']?.trim() || undefined;
      const fromHeader = header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
      if (header !== undefined && fromHeader === undefined) {
        throw new AppError('invalid_request', 'Last-Event-ID must be an event number', {
          param: 'Last-Event-ID',
        });
      }
      const after = fromHeader ?? request.query.after ?? 0;
      const events = openEventStream(reply, { 'x-generation-id': row.id }, api.closing);
      const uncount = countStream(api, 'conversations_sse');
      const unwatch = closeOnRevocation(api, request, events);
      try {
        for await (const event of feed.follow(row.id, after, events.signal)) await events.send(event);
      } catch (err) {
        request.log.error({ err, generationId: row.id }, 'generation event stream failed');
      } finally {
        unwatch();
        uncount();
        events.end();
      }
      return reply;
    },
  );

  app.post(
    '/api/generations/:id/cancel',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Stop a generation; its text so far is kept (status partial)',
        params: GenerationParams,
        response: { 200: CancelResult, 202: CancelResult, ...errorResponses, 409: Type.Ref('Error') },
      },
    },
    async (request, reply) => {
      const row = await owned(callerOf(request).userId, request.params.id);
      const result = async () => {
        const current = await owned(row.user_id, row.id);
        const message = await api.store.findMessage(current.conversation_id, current.message_id);
        return {
          generation_id: row.id,
          status: current.status,
          message: message ? toPublicMessage(message) : null,
        };
      };
      if (row.status !== 'running') return result();
      const live = api.manager.get(row.id);
      if (live && api.manager.cancel(row.id)) {
        await live.finished;
        return result();
      }
      if (live) {
        await live.finished; // it was ending on its own
        return result();
      }
      if (!api.redisLog) {
        throw new AppError(
          'conflict',
          'this generation runs on another server and cannot be cancelled from here',
        );
      }
      // Asked on the channel of the replica holding its lease: nobody listening there means that replica is
      // gone, and the generation is finished here at once (cancelled), without waiting for its lease to expire.
      const asked = await api.cancelElsewhere?.(row.id);
      if (asked === 'finished') return result();
      // No lease: its replica died long enough ago, finish it here (saved partial), nothing to wait for.
      if (asked !== 'asked' && (await api.finishAbandoned?.(row.id))) return result();
      if (asked !== 'asked') await api.redisLog.requestCancel(row.id);
      // The replica running it saves it within moments; wait a little so the answer can say how it ended.
      // A replica that died instead lets its lease expire (a few seconds): then it is finished here.
      const deadline = Date.now() + (api.leaseTtlMs ? 2 * api.leaseTtlMs : 2_000);
      for (let i = 0; i < 100 && Date.now() < deadline; i++) {
        const current = await owned(row.user_id, row.id);
        if (current.status !== 'running') return result();
        if (await api.finishAbandoned?.(row.id)) return result();
        await sleep(100);
      }
      reply.code(202);
      return { generation_id: row.id, status: 'cancelling', message: null };
    },
  );
}
