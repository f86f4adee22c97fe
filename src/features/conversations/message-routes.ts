import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { bearerSecurity } from '../../plugins/auth.js';
import { type ConversationApi, callerOf, errorResponses } from './context-deps.js';
import { deliverGeneration } from './delivery.js';
import {
  ConversationParams,
  EditMessageBody,
  GenerateBody,
  IdempotencyHeaders,
  MessageParams,
  replyOptions,
  SendMessageBody,
} from './schemas.js';

const generationResponses = {
  200: Type.String({
    description:
      'stream (default): text/event-stream with events message, start, delta…, then done or error; each has an ' +
      '`id:`. An `event: closed` (no id) ends it early when the credential is revoked or expires. Refusals by ' +
      'rate limits and budgets answer 429 before anything is stored.',
  }),
  201: Type.Ref('GenerationResult'),
  ...errorResponses,
  409: Type.Ref('Error'),
  422: Type.Ref('Error'),
  429: Type.Ref('Error'),
  502: Type.Ref('Error'),
  503: Type.Ref('Error'),
  504: Type.Ref('Error'),
};

/** Optional bodies: a POST without one validates as `{}`. */
async function emptyBodyAsObject(request: FastifyRequest) {
  if (request.body === undefined || request.body === null) request.body = {};
}

/** Sending, editing, regenerating and continuing messages: each starts a generation. */
export async function messageRoutes(fastify: FastifyInstance, api: ConversationApi) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['conversations'], security: bearerSecurity };
  const { service } = api;

  app.post(
    '/api/conversations/:id/messages',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary:
          'Send a message and generate the reply. The message is stored before the model is called; the reply ' +
          'is generated even if the client disconnects (reconnect with GET /api/generations/{id}/events).',
        params: ConversationParams,
        headers: IdempotencyHeaders,
        body: SendMessageBody,
        response: generationResponses,
      },
    },
    async (request, reply) => {
      const { content, parent_id, model, stream, attachments } = request.body;
      const started = await service.send(
        callerOf(request),
        request.params.id,
        { content, parentId: parent_id, model, attachments, options: replyOptions(request.body) },
        request.headers['idempotency-key'],
      );
      return deliverGeneration(api, request, reply, started, stream ?? true);
    },
  );

  app.post(
    '/api/conversations/:id/messages/:messageId/edit',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Edit a user message: a new sibling with this content (a new branch) and its reply',
        params: MessageParams,
        headers: IdempotencyHeaders,
        body: EditMessageBody,
        response: generationResponses,
      },
    },
    async (request, reply) => {
      const { content, model, stream, attachments } = request.body;
      const started = await service.edit(
        callerOf(request),
        request.params.id,
        request.params.messageId,
        { content, model, attachments, options: replyOptions(request.body) },
        request.headers['idempotency-key'],
      );
      return deliverGeneration(api, request, reply, started, stream ?? true);
    },
  );

  app.post(
    '/api/conversations/:id/messages/:messageId/regenerate',
    {
      preHandler: app.authenticate,
      preValidation: emptyBodyAsObject,
      schema: {
        ...common,
        summary: 'Generate another reply to the same user message (a sibling of the given reply)',
        params: MessageParams,
        headers: IdempotencyHeaders,
        body: GenerateBody,
        response: generationResponses,
      },
    },
    async (request, reply) => {
      const { model, stream } = request.body;
      const started = await service.regenerate(
        callerOf(request),
        request.params.id,
        request.params.messageId,
        { model, options: replyOptions(request.body) },
        request.headers['idempotency-key'],
      );
      return deliverGeneration(api, request, reply, started, stream ?? true);
    },
  );

  app.post(
    '/api/conversations/:id/messages/:messageId/continue',
    {
      preHandler: app.authenticate,
      preValidation: emptyBodyAsObject,
      schema: {
        ...common,
        summary: 'Resume a partial reply from its text so far (with the same or another model)',
        params: MessageParams,
        headers: IdempotencyHeaders,
        body: GenerateBody,
        response: generationResponses,
      },
    },
    async (request, reply) => {
      const { model, stream } = request.body;
      const started = await service.continue(
        callerOf(request),
        request.params.id,
        request.params.messageId,
        { model, options: replyOptions(request.body) },
        request.headers['idempotency-key'],
      );
      return deliverGeneration(api, request, reply, started, stream ?? true);
    },
  );
}
