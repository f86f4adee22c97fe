import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import { Email, Password } from '../../http/schemas.js';
import type { AccountMail } from '../mail/account-mail.js';
import { pickLocale } from '../mail/templates.js';
import { toPublicUser, type UserStore } from '../users/store.js';
import type { AuthService } from './service.js';

export const TokenPair = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer({ description: 'seconds until the access token expires' }),
  refresh_token: Type.String({ description: 'single use: each refresh returns a new one' }),
  user: Type.Ref('User'),
});
const RefreshBody = Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 512 }) });
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  429: Type.Ref('Error'),
};

export async function authRoutes(
  fastify: FastifyInstance,
  deps: {
    auth: AuthService;
    users: UserStore;
    allowSignup: boolean;
    /** With it, a sign-up gets no tokens: it must follow the link mailed to it first (202). */
    verification?: AccountMail | undefined;
  },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // Sign-ups that may be the first account run one at a time, so concurrent ones cannot all become admin.
  let firstSignups: Promise<unknown> = Promise.resolve();

  app.post(
    '/api/auth/signup',
    {
      schema: {
        tags: ['auth'],
        summary: 'Create an account (when ALLOW_SIGNUP is on). The first account ever created is an admin.',
        body: Type.Object({
          email: Email,
          password: Password,
          display_name: Type.Optional(Type.String({ maxLength: 200 })),
        }),
        response: {
          201: TokenPair,
          202: Type.Object({
            verification_required: Type.Literal(true),
            message: Type.String(),
            user: Type.Ref('User'),
          }),
          409: Type.Ref('Error'),
          503: Type.Ref('Error'),
          ...errors,
        },
      },
    },
    async (request, reply) => {
      if (!deps.allowSignup)
        throw new AppError('signup_disabled', 'sign-up is closed; ask an administrator for an account');
      const { email, password, display_name } = request.body;
      const { verification } = deps;
      const displayName = display_name ?? null;
      // With verification required, the account and its verification mail are written together.
      const create = (role: 'admin' | 'user') =>
        verification
          ? verification.signUpPending(
              (db) =>
                deps.auth.createUser({ email, password, role, displayName, verificationPending: true }, db),
              pickLocale(request.headers['accept-language']),
            )
          : deps.auth.createUser({ email, password, role, displayName });
      let user: Awaited<ReturnType<typeof create>>;
      if ((await deps.users.count()) > 0) user = await create('user');
      else {
        const created = firstSignups.then(async () =>
          create((await deps.users.count()) === 0 ? 'admin' : 'user'),
        );
        firstSignups = created.catch(() => {});
        user = await created;
      }
      if (verification) {
        reply.code(202);
        return {
          verification_required: true as const,
          message: `a link to confirm ${user.email} is on its way; follow it, then sign in`,
          user: toPublicUser(user),
        };
      }
      reply.code(201);
      return deps.auth.login(email, password, request.ip);
    },
  );

  app.post(
    '/api/auth/login',
    {
      schema: {
        tags: ['auth'],
        summary: 'Exchange email and password for an access token and a refresh token',
        body: Type.Object({ email: Type.String({ minLength: 1, maxLength: 254 }), password: Password }),
        response: { 200: TokenPair, ...errors },
      },
    },
    async (request) => deps.auth.login(request.body.email, request.body.password, request.ip),
  );

  app.post(
    '/api/auth/refresh',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Rotate a refresh token: returns a new pair; reusing an old refresh token revokes its family',
        body: RefreshBody,
        response: { 200: TokenPair, ...errors },
      },
    },
    async (request) => deps.auth.refresh(request.body.refresh_token),
  );

  app.post(
    '/api/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Sign out: revoke a refresh token (and the tokens rotated from the same login); the access tokens of that login stop working at once',
        body: RefreshBody,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await deps.auth.logout(request.body.refresh_token);
      reply.code(204);
      return null;
    },
  );
}
