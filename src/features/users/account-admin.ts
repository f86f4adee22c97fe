import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError, notFound } from '../../core/errors.js';
import { nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import { IdParams, Password } from '../../http/schemas.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import type { ApiKeyStore } from '../api-keys/store.js';
import { assertPasswordAcceptable, hashPassword } from '../auth/passwords.js';
import type { RefreshTokenStore } from '../auth/refresh-tokens.js';
import type { FilesService } from '../files/service.js';
import type { BudgetStore } from '../limits/budget-store.js';
import type { LimitOverrideStore } from '../limits/overrides.js';
import type { LimitScope } from '../limits/tables.js';
import type { AccountMail } from '../mail/account-mail.js';
import { pickLocale } from '../mail/templates.js';
import type { UserRow, UserStore } from './store.js';

const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
  409: Type.Ref('Error'),
};

/** A password hash no password verifies against (argon2 and bcrypt hashes start with `$`). */
const NO_PASSWORD = '!deleted';

/**
 * Admin actions on another account (issue 23): delete it, reset its password. Both are audited by the audit
 * plugin (every write under /api/users is). Sign-outs apply on every replica at once: the refresh-token store
 * and the API key cache announce them (Redis pub/sub), and CredentialWatch ends the open streams they held.
 */
export async function accountAdminRoutes(
  fastify: FastifyInstance,
  deps: {
    db: Db;
    users: UserStore;
    apiKeys: ApiKeyStore;
    refreshTokens: RefreshTokenStore;
    files: FilesService;
    /** Mails the reset link when mail is configured; without it the admin sets the new password. */
    mail?: AccountMail | undefined;
    /** The user's and their keys' budgets and rate-limit overrides go with the account. */
    limits?: { budgets: BudgetStore; overrides: LimitOverrideStore } | undefined;
  },
) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const admin = { tags: ['users'], security: bearerSecurity };

  /** The account, unless it is unknown or already deleted (both 404). */
  async function existing(id: string): Promise<UserRow> {
    const user = await deps.users.findById(id);
    if (!user || user.deleted_at) throw notFound('user');
    return user;
  }

  app.delete(
    '/api/users/:id',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...admin,
        summary:
          'Delete a user (admin): their API keys are revoked and sessions ended at once; their conversations, assistants, files and stored responses are deleted, and the budgets and rate-limit overrides of the user and their keys; usage rows stay for accounting',
        params: IdParams,
        response: {
          200: Type.Object({
            id: Type.String(),
            email: Type.String({ description: 'the address the account had' }),
            deleted_at: Type.String(),
            removed: Type.Object({
              conversations: Type.Integer(),
              assistants: Type.Integer(),
              files: Type.Integer(),
              budgets: Type.Integer({ description: 'of the user and their API keys' }),
              limit_overrides: Type.Integer({ description: 'of the user and their API keys' }),
            }),
            kept: Type.String({ description: 'what stays, and why' }),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const user = await existing(request.params.id);
      if (principal.userId === user.id)
        throw new AppError('conflict', 'you cannot delete your own account; ask another admin');
      if (user.role === 'admin' && !user.disabled_at && (await activeAdmins(deps.db)) <= 1)
        throw new AppError('conflict', 'this is the last active admin: make another user an admin first');
      const deletedAt = nowIso();
      // Credentials first: nothing the account holds works once the rest is being removed.
      await deps.users.update(user.id, { disabled_at: user.disabled_at ?? deletedAt });
      await deps.apiKeys.revokeAllOf(user.id);
      await deps.refreshTokens.revokeAllForUser(user.id);
      const removed = await deps.db.transaction().execute(async (trx) => {
        // Messages go with their conversations (foreign keys cascade); others' conversations with one of
        // these assistants keep their messages (assistant_id is set null).
        const conversations = await trx.deleteFrom('conversations').where('user_id', '=', user.id).execute();
        const assistants = await trx.deleteFrom('assistants').where('owner_id', '=', user.id).execute();
        await trx
          .withTables<{ responses: { user_id: string | null } }>()
          .deleteFrom('responses')
          .where('user_id', '=', user.id)
          .execute();
        await trx
          .withTables<{ mail_tokens: { user_id: string | null } }>()
          .deleteFrom('mail_tokens')
          .where('user_id', '=', user.id)
          .execute();
        // The tombstone: no address (it may sign up again), no password, marked deleted.
        await trx
          .updateTable('users')
          .set({
            email: `deleted-${user.id}@deleted.invalid`,
            password_hash: NO_PASSWORD,
            display_name: null,
            deleted_at: deletedAt,
            updated_at: deletedAt,
          })
          .where('id', '=', user.id)
          .execute();
        return {
          conversations: Number(conversations[0]?.numDeletedRows ?? 0),
          assistants: Number(assistants[0]?.numDeletedRows ?? 0),
        };
      });
      const files = await deps.files.deleteAllOf(user.id);
      const limits = await removeLimits(deps, user.id);
      return {
        id: user.id,
        email: user.email,
        deleted_at: deletedAt,
        removed: { ...removed, files, ...limits },
        kept: 'usage and spend rows (and the revoked API keys they name) stay for accounting',
      };
    },
  );

  app.post(
    '/api/users/:id/password',
    {
      preHandler: app.requireAdmin,
      schema: {
        ...admin,
        summary:
          'Reset a user’s password (admin): with `password`, set it and sign every session out; without, mail a reset link (needs mail)',
        params: IdParams,
        body: Type.Object({ password: Type.Optional(Password) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            outcome: Type.Union([Type.Literal('password_set'), Type.Literal('reset_mailed')]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const user = await existing(request.params.id);
      const { password } = request.body;
      if (password === undefined) {
        if (!deps.mail?.enabled)
          throw new AppError('invalid_request', 'mail is not configured: give the new password', {
            param: 'password',
          });
        if (user.disabled_at)
          throw new AppError('conflict', 'the account is disabled: its reset link would not work');
        await deps.mail.mailReset(user, pickLocale(request.headers['accept-language']));
        return { outcome: 'reset_mailed' as const };
      }
      assertPasswordAcceptable(password, user.email);
      await deps.users.update(user.id, { password_hash: await hashPassword(password) });
      // Every session of the account ends (its API keys are not passwords: they keep working).
      await deps.refreshTokens.revokeAllForUser(user.id);
      return { outcome: 'password_set' as const };
    },
  );
}

/**
 * Removes the budgets and rate-limit overrides of the user and of each of their keys (revoked ones too: a
 * key's settings outlive its revocation otherwise). Each removal is announced to every replica (Redis pub/sub,
 * LimitInvalidations), whose caches drop the subject at once.
 */
async function removeLimits(
  deps: { db: Db; limits?: { budgets: BudgetStore; overrides: LimitOverrideStore } | undefined },
  userId: string,
): Promise<{ budgets: number; limit_overrides: number }> {
  const out = { budgets: 0, limit_overrides: 0 };
  if (!deps.limits) return out;
  const keys = await deps.db.selectFrom('api_keys').select('id').where('user_id', '=', userId).execute();
  const subjects: [LimitScope, string][] = [
    ['user', userId],
    ...keys.map((k) => ['key', k.id] as [LimitScope, string]),
  ];
  for (const [scope, id] of subjects) {
    out.budgets += await deps.limits.budgets.remove(scope, id);
    out.limit_overrides += await deps.limits.overrides.remove(scope, id);
  }
  return out;
}

/** Admins who can still sign in: not disabled, not deleted. */
async function activeAdmins(db: Db): Promise<number> {
  const row = await db
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('role', '=', 'admin')
    .where('disabled_at', 'is', null)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
