import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import { IdParams, PaginationQuery, page, toPage } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { assertManageable, assertVisible } from './access.js';
import { AssistantSchema, CreateAssistantBody, UpdateAssistantBody } from './schemas.js';
import { type AssistantStore, toPublicAssistant } from './store.js';

const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};

export interface AssistantDeps {
  assistants: AssistantStore;
  gateway: ChatGateway;
}

export function assertModelExists(gateway: ChatGateway, model: string) {
  if (!gateway.hasModel(model)) {
    throw new AppError(
      'model_not_found',
      `The model \`${model}\` does not exist or you do not have access to it.`,
      {
        param: 'model',
      },
    );
  }
}

/** Assistants (personas): shared ones managed by admins, private ones by their owner. */
export async function assistantRoutes(fastify: FastifyInstance, deps: AssistantDeps) {
  fastify.addSchema(AssistantSchema);
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['assistants'], security: bearerSecurity };

  app.post(
    '/api/assistants',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Create an assistant: private to you, or shared with everyone (admins only)',
        body: CreateAssistantBody,
        response: { 201: Type.Ref('Assistant'), ...errors },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const body = request.body;
      if (body.shared && principal.role !== 'admin') {
        throw new AppError('forbidden', 'only admins create shared assistants');
      }
      if (!body.shared && !principal.userId) {
        throw new AppError('invalid_request', 'the master key has no user account: pass shared: true', {
          param: 'shared',
        });
      }
      assertModelExists(deps.gateway, body.model);
      const row = await deps.assistants.create({
        ownerId: body.shared ? null : principal.userId,
        name: body.name,
        description: body.description ?? null,
        systemPrompt: body.system_prompt ?? '',
        model: body.model,
        params: body.params ?? {},
      });
      reply.code(201);
      return toPublicAssistant(row);
    },
  );

  app.get(
    '/api/assistants',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'List the assistants you can use: shared ones and your own (admins: all=true for every one)',
        querystring: Type.Intersect([PaginationQuery, Type.Object({ all: Type.Optional(Type.Boolean()) })]),
        response: { 200: page(Type.Ref('Assistant')), ...errors },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const { limit, after, all } = request.query;
      if (all && principal.role !== 'admin')
        throw new AppError('forbidden', 'only admins list every assistant');
      const rows = await deps.assistants.list({
        viewerId: all ? undefined : principal.userId,
        limit: limit + 1,
        after,
      });
      return toPage(rows, limit, toPublicAssistant);
    },
  );

  app.get(
    '/api/assistants/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'One assistant',
        params: IdParams,
        response: { 200: Type.Ref('Assistant'), ...errors },
      },
    },
    async (request) =>
      toPublicAssistant(
        assertVisible(principalOf(request), await deps.assistants.findById(request.params.id)),
      ),
  );

  app.patch(
    '/api/assistants/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Change an assistant (shared ones: admins only)',
        params: IdParams,
        body: UpdateAssistantBody,
        response: { 200: Type.Ref('Assistant'), ...errors },
      },
    },
    async (request) => {
      const row = assertManageable(principalOf(request), await deps.assistants.findById(request.params.id));
      const { name, description, system_prompt, model, params } = request.body;
      const changes: Parameters<AssistantStore['update']>[1] = {};
      if (name !== undefined) changes.name = name;
      if (description !== undefined) changes.description = description;
      if (system_prompt !== undefined) changes.system_prompt = system_prompt;
      if (model !== undefined) {
        assertModelExists(deps.gateway, model);
        changes.model = model;
      }
      if (params !== undefined) changes.params = JSON.stringify(params);
      return toPublicAssistant((await deps.assistants.update(row.id, changes))!);
    },
  );

  app.delete(
    '/api/assistants/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Delete an assistant; conversations that used it keep their messages and lose the persona',
        params: IdParams,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      const row = assertManageable(principalOf(request), await deps.assistants.findById(request.params.id));
      await deps.assistants.delete(row.id);
      reply.code(204);
      return null;
    },
  );
}
