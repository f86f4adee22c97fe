import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import { bearerSecurity } from '../../plugins/auth.js';
import { type ConversationApi, callerOf, errorResponses } from './context-deps.js';
import {
  ConversationParams,
  CreateConversationBody,
  ListConversationsQuery,
  ListMessagesQuery,
  UpdateConversationBody,
} from './schemas.js';
import type { Caller } from './service.js';
import {
  type ConversationRow,
  type ConversationStore,
  decodeCursor,
  encodeCursor,
  toPublicConversation,
  toPublicMessage,
} from './store.js';

/** Conversations: create, list (newest first, searchable), read, rename / re-point, delete; and their branches. */
export async function conversationCrudRoutes(fastify: FastifyInstance, api: ConversationApi) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['conversations'], security: bearerSecurity };
  const { store, service } = api;

  app.post(
    '/api/conversations',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Start a conversation, optionally with an assistant and a model',
        body: CreateConversationBody,
        response: { 201: Type.Ref('Conversation'), ...errorResponses },
      },
    },
    async (request, reply) => {
      const { userId } = callerOf(request);
      const { title, assistant_id, model } = request.body;
      if (assistant_id) await service.usableAssistant(userId, assistant_id);
      if (model) service.assertModel(model);
      const row = await store.create({
        userId,
        title: title ?? null,
        assistantId: assistant_id ?? null,
        model: model ?? null,
      });
      reply.code(201);
      return (await withFlags(api, callerOf(request), [row]))[0]!;
    },
  );

  app.get(
    '/api/conversations',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Your conversations, most recently active first; `q` searches titles and message text',
        querystring: ListConversationsQuery,
        response: {
          200: Type.Object({
            data: Type.Array(Type.Ref('Conversation')),
            next_cursor: Type.Union([Type.String(), Type.Null()], {
              description: 'pass as `after` for the next page',
            }),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const { userId } = callerOf(request);
      const { limit, after, q } = request.query;
      const cursor = after ? decodeCursor(after) : undefined;
      if (after && !cursor) throw new AppError('invalid_request', 'invalid cursor', { param: 'after' });
      const rows = await store.list({ userId, limit: limit + 1, after: cursor, q: q?.trim() || undefined });
      const more = rows.length > limit;
      const kept = more ? rows.slice(0, limit) : rows;
      return {
        data: await withFlags(api, callerOf(request), kept),
        next_cursor: more ? encodeCursor(kept.at(-1)!) : null,
      };
    },
  );

  app.get(
    '/api/conversations/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'One conversation',
        params: ConversationParams,
        response: { 200: Type.Ref('Conversation'), ...errorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const row = await service.conversation(caller.userId, request.params.id);
      return (await withFlags(api, caller, [row]))[0]!;
    },
  );

  app.patch(
    '/api/conversations/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary:
          'Rename, change the model or assistant, or switch the active branch (to the newest leaf under active_leaf_id)',
        params: ConversationParams,
        body: UpdateConversationBody,
        response: { 200: Type.Ref('Conversation'), ...errorResponses },
      },
    },
    async (request) => {
      const { userId } = callerOf(request);
      const conversation = await service.conversation(userId, request.params.id);
      const { title, assistant_id, model, active_leaf_id } = request.body;
      const changes: Parameters<ConversationStore['update']>[1] = {};
      if (title !== undefined) changes.title = title;
      if (assistant_id !== undefined) {
        if (assistant_id !== null) await service.usableAssistant(userId, assistant_id);
        changes.assistant_id = assistant_id;
      }
      if (model !== undefined) {
        if (model !== null) service.assertModel(model);
        changes.model = model;
      }
      if (active_leaf_id !== undefined) {
        const tree = await store.tree(conversation.id);
        if (!tree.has(active_leaf_id)) throw notFound('message');
        changes.active_leaf_id = tree.newestLeafUnder(active_leaf_id);
      }
      await store.update(conversation.id, changes);
      return (
        await withFlags(api, callerOf(request), [(await store.findOwned(userId, conversation.id))!])
      )[0]!;
    },
  );

  app.delete(
    '/api/conversations/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Delete a conversation and its messages (replies being generated are stopped)',
        params: ConversationParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (request, reply) => {
      const conversation = await service.conversation(callerOf(request).userId, request.params.id);
      await api.manager.cancelConversation(conversation.id);
      await store.delete(conversation.id);
      await api.onConversationDeleted?.(conversation.id);
      reply.code(204);
      return null;
    },
  );

  app.get(
    '/api/conversations/:id/messages',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary:
          'The messages of the active branch (or of the branch through `leaf`), root to leaf, each with its siblings’ ids',
        params: ConversationParams,
        querystring: ListMessagesQuery,
        response: {
          200: Type.Object({
            data: Type.Array(Type.Ref('Message')),
            next_cursor: Type.Union([Type.String(), Type.Null()], {
              description: 'pass as `after` for the next page',
            }),
            leaf_id: Type.Union([Type.String(), Type.Null()], {
              description: 'the last message of the branch shown',
            }),
          }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const conversation = await service.conversation(callerOf(request).userId, request.params.id);
      const { limit, after, leaf } = request.query;
      const tree = await store.tree(conversation.id);
      let leafId = conversation.active_leaf_id;
      if (leaf) {
        if (!tree.has(leaf)) throw notFound('message');
        leafId = tree.newestLeafUnder(leaf);
      }
      const path = leafId ? tree.pathTo(leafId) : [];
      let start = 0;
      if (after) {
        const index = path.indexOf(after);
        if (index < 0)
          throw new AppError('invalid_request', 'invalid cursor for this branch', { param: 'after' });
        start = index + 1;
      }
      const ids = path.slice(start, start + limit);
      const rows = await store.messagesByIds(ids);
      const more = start + limit < path.length;
      const files = await api.attachments?.filesOfMessages(ids);
      return {
        data: rows.map((row) => ({
          ...toPublicMessage(row, tree.siblingsOf(row.id)),
          ...(files?.has(row.id) ? { attachments: files.get(row.id) } : {}),
        })),
        next_cursor: more ? (ids.at(-1) ?? null) : null,
        leaf_id: leafId,
      };
    },
  );
}

/**
 * Conversations as the API shows them; for an admin with the flag of each (null when not flagged), the crisis
 * referral's mark (issue 22). Other callers never see the field: a user in crisis is not shown a label.
 */
async function withFlags(api: ConversationApi, caller: Caller, rows: ConversationRow[]) {
  if (caller.role !== 'admin' || !api.flags) return rows.map((row) => toPublicConversation(row));
  const flags = await api.flags.of(rows.map((row) => row.id));
  return rows.map((row) => ({ ...toPublicConversation(row), flagged: flags.get(row.id) ?? null }));
}
