import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import { Email, IdParams, PaginationQuery, Password, page, toPage } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { assertPasswordAcceptable, hashPassword, verifyPassword } from '../auth/passwords.js';
import type { RefreshTokenStore } from '../auth/refresh-tokens.js';
import type { AuthService } from '../auth/service.js';
import type { AccountMail } from '../mail/account-mail.js';
import { pickLocale } from '../mail/templates.js';
import { toPublicUser, type UserStore } from './store.js';

const Role = Type.Union([Type.Literal('admin'), Type.Literal('user')]);
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};

export async function userRoutes(
  fastify: FastifyInstance,
  deps: {
    users: UserStore;
    auth: AuthService;
    refreshTokens: RefreshTokenStore;
    /** Mails the owner a notice when their password changes (when mail is configured). */
    notices?: AccountMail | undefined;
  },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const me = { tags: ['users'], security: bearerSecurity };
  const admin = { tags: ['users'], security: bearerSecurity };

  app.get(
    '/api/me',
    {
      preHandler: app.authenticate,
      schema: { ...me, summary: 'The signed-in user', response: { 200: Type.Ref('User'), ...errors } },
    },
    async (request) => {
      const { userId } = principalOf(request);
      if (!userId) throw new AppError('invalid_request', 'the master key has no user account');
      const user = await deps.users.findById(userId);
      if (!user) throw notFound('user');
      return toPublicUser(user);
    },
  );

  app.patch(
    '/api/me',
    {
      preHandler: app.authenticate,
      schema: {
        ...me,
        summary: 'Change your display name or password (the current password is required to change it)',
        body: Type.Object(
          {
            display_name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
            password: Type.Optional(Password),
            current_password: Type.Optional(Password),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Ref('User'), ...errors },
      },
    },
    async (request) => {
      const { userId } = principalOf(request);
      if (!userId) throw new AppError('invalid_request', 'the master key has no user account');
      const user = await deps.users.findById(userId);
      if (!user) throw notFound('user');
      const { display_name, password, current_password } = request.body;
      const changes: Parameters<UserStore['update']>[1] = {};
      if (display_name !== undefined) changes.display_name = display_name;
      if (password !== undefined) {
        if (!current_password || !(await verifyPassword(user.password_hash, current_password))) {
          throw new AppError('invalid_credentials', 'current_password is missing or wrong', {
            param: 'current_password',
          });
        }
        assertPasswordAcceptable(password, user.email);
        changes.password_hash = await hashPassword(password);
      }
      const updated = await deps.users.update(user.id, changes);
      // A new password signs every other session out (their access tokens too); the caller's stays.
      if (password !== undefined) {
        await deps.refreshTokens.revokeAllForUser(user.id, { except: principalOf(request).sessionId });
        await deps.notices?.notify(
          user.id,
          'password_changed',
          pickLocale(request.headers['accept-language']),
        );
      }
      return toPublicUser(updated!);
    },
  );

  app.get(
    '/api/users',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...admin,
        summary: 'List users (admin)',
        querystring: PaginationQuery,
        response: { 200: page(Type.Ref('User')), ...errors },
      },
    },
    async (request) => {
      const { limit, after } = request.query;
      return toPage(await deps.users.list({ limit: limit + 1, after }), limit, toPublicUser);
    },
  );

  app.post(
    '/api/users',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...admin,
        summary: 'Create a user (admin)',
        body: Type.Object({
          email: Email,
          password: Password,
          role: Type.Optional(Role),
          display_name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
        }),
        response: { 201: Type.Ref('User'), 409: Type.Ref('Error'), ...errors },
      },
    },
    async (request, reply) => {
      const { email, password, role, display_name } = request.body;
      const user = await deps.auth.createUser({
        email,
        password,
        role: role ?? 'user',
        displayName: display_name ?? null,
      });
      reply.code(201);
      return toPublicUser(user);
    },
  );

  app.get(
    '/api/users/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...admin,
        summary: 'A user: admins see anyone, a user only themself',
        params: IdParams,
        response: { 200: Type.Ref('User'), ...errors },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      // Others' accounts are "not found", not "forbidden": a user learns nothing about who exists.
      if (principal.role !== 'admin' && principal.userId !== request.params.id) throw notFound('user');
      const user = await deps.users.findById(request.params.id);
      if (!user || user.deleted_at) throw notFound('user');
      return toPublicUser(user);
    },
  );

  app.patch(
    '/api/users/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...admin,
        summary: 'Change a user’s role, display name, or disable / re-enable the account (admin)',
        params: IdParams,
        body: Type.Object(
          {
            role: Type.Optional(Role),
            disabled: Type.Optional(Type.Boolean()),
            display_name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Ref('User'), ...errors },
      },
    },
    async (request) => {
      const user = await deps.users.findById(request.params.id);
      if (!user || user.deleted_at) throw notFound('user');
      const { role, disabled, display_name } = request.body;
      const changes: Parameters<UserStore['update']>[1] = {};
      if (role !== undefined) changes.role = role;
      if (display_name !== undefined) changes.display_name = display_name;
      if (disabled !== undefined)
        changes.disabled_at = disabled ? (user.disabled_at ?? new Date().toISOString()) : null;
      const updated = await deps.users.update(user.id, changes);
      if (disabled) await deps.refreshTokens.revokeAllForUser(user.id);
      if (disabled !== undefined || role !== undefined) await deps.auth.forgetUser(user.id);
      return toPublicUser(updated!);
    },
  );
}
