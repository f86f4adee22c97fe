import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { Email, Password } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { TokenPair } from '../auth/routes.js';
import type { AuthService } from '../auth/service.js';
import { toPublicUser } from '../users/store.js';
import type { AccountMail } from './account-mail.js';
import { pickLocale } from './templates.js';

const MailToken = Type.String({
  minLength: 1,
  maxLength: 512,
  description: 'the `token` of the mailed link',
});
const Accepted = Type.Object({
  status: Type.Literal('accepted'),
  message: Type.String(),
});
const Invitation = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: Type.Union([Type.Literal('admin'), Type.Literal('user')]),
  expires_at: Type.String(),
});
const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  429: Type.Ref('Error'),
  503: Type.Ref('Error'),
};
const locale = (headers: { 'accept-language'?: string | undefined }) =>
  pickLocale(headers['accept-language']);

export async function mailRoutes(
  fastify: FastifyInstance,
  deps: { mail: AccountMail; auth: AuthService; allowSignup: boolean; requireEmailVerification: boolean },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { mail } = deps;

  app.get(
    '/api/auth/options',
    {
      schema: {
        tags: ['auth'],
        summary:
          'What the sign-in page may offer (no credentials needed): sign-up, and the features that need mail',
        response: {
          200: Type.Object({
            signup: Type.Boolean(),
            mail: Type.Boolean({
              description: 'SMTP is configured: reset, verification, invitations, notices',
            }),
            password_reset: Type.Boolean(),
            email_verification_required: Type.Boolean(),
            invitations: Type.Boolean(),
          }),
        },
      },
    },
    async () => ({
      signup: deps.allowSignup,
      mail: mail.enabled,
      password_reset: mail.enabled,
      email_verification_required: deps.requireEmailVerification,
      invitations: mail.enabled,
    }),
  );

  app.post(
    '/api/auth/password-reset',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Mail a password-reset link (valid 30 minutes, once). 202 whether or not the address has an account; 503 mail_not_configured without SMTP',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: { 202: Accepted, ...errors },
      },
    },
    async (request, reply) => {
      await mail.requestReset(request.body.email, request.ip, locale(request.headers));
      reply.code(202);
      return {
        status: 'accepted' as const,
        message: 'if this address has an account, a link to reset its password is on its way',
      };
    },
  );

  app.post(
    '/api/auth/password-reset/confirm',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Set a new password with the token of a reset link: every session of the account is signed out, and a notice is mailed',
        body: Type.Object({ token: MailToken, password: Password }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await mail.confirmReset(request.body.token, request.body.password, locale(request.headers));
      reply.code(204);
      return null;
    },
  );

  app.post(
    '/api/auth/verify-email',
    {
      schema: {
        tags: ['auth'],
        summary: 'Confirm an address with the token of a verification link; the account may then sign in',
        body: Type.Object({ token: MailToken }, { additionalProperties: false }),
        response: { 200: Type.Ref('User'), ...errors },
      },
    },
    async (request) => toPublicUser(await mail.verifyEmail(request.body.token)),
  );

  app.post(
    '/api/auth/verify-email/resend',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Mail a new verification link to an account waiting for one; 202 whatever the address (throttled)',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: { 202: Accepted, ...errors },
      },
    },
    async (request, reply) => {
      await mail.resendVerification(request.body.email, request.ip, locale(request.headers));
      reply.code(202);
      return {
        status: 'accepted' as const,
        message: 'if this address is waiting for verification, a new link is on its way',
      };
    },
  );

  app.post(
    '/api/invitations',
    {
      preHandler: app.requireAdmin,
      schema: {
        tags: ['users'],
        security: bearerSecurity,
        summary:
          'Invite an address with a role (admin): a link to create the account is mailed (valid 7 days, once)',
        body: Type.Object(
          {
            email: Email,
            role: Type.Optional(Type.Union([Type.Literal('admin'), Type.Literal('user')])),
            locale: Type.Optional(
              Type.Union([Type.Literal('en'), Type.Literal('zh')], {
                description: 'the language of the mail (default: from Accept-Language)',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 201: Invitation, 409: Type.Ref('Error'), ...errors },
      },
    },
    async (request, reply) => {
      const row = await mail.invite({
        email: request.body.email,
        role: request.body.role ?? 'user',
        invitedBy: principalOf(request).userId,
        locale: request.body.locale ?? locale(request.headers),
      });
      reply.code(201);
      return { id: row.id, email: row.email, role: row.role ?? 'user', expires_at: row.expires_at };
    },
  );

  app.post(
    '/api/invitations/accept',
    {
      schema: {
        tags: ['auth'],
        summary:
          'Create the invited account with the token of an invitation link and a password; returns a signed-in token pair',
        body: Type.Object(
          {
            token: MailToken,
            password: Password,
            display_name: Type.Optional(Type.String({ maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        response: { 201: TokenPair, 409: Type.Ref('Error'), ...errors },
      },
    },
    async (request, reply) => {
      const { token, password, display_name } = request.body;
      const email = await mail.acceptInvitation(token, password, display_name ?? null);
      reply.code(201);
      return deps.auth.login(email, password, request.ip);
    },
  );
}
