import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { newId, nowIso } from '../../core/ids.js';
import { storableText, truncateGraphemes } from '../../core/text-normalize.js';
import type { AuditWriter } from './writer.js';

const AUTH_ACTIONS: Record<string, string> = {
  '/api/auth/login': 'auth.login',
  '/api/auth/signup': 'auth.signup',
  '/api/auth/refresh': 'auth.refresh',
  '/api/auth/logout': 'auth.logout',
};

/** What to audit: every auth event, every change to keys or accounts, and every admin write. */
function actionOf(request: FastifyRequest): string | undefined {
  const route = request.routeOptions.url;
  if (!route) return undefined;
  const auth = AUTH_ACTIONS[route];
  if (auth) return auth;
  if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return undefined;
  const touchesAccounts =
    route.startsWith('/api/keys') || route.startsWith('/api/users') || route === '/api/me';
  if (touchesAccounts || request.principal?.role === 'admin') return `${request.method} ${route}`;
  return undefined;
}

/**
 * The audit trail, as rows (queryable by admins) and as log lines (shipped with the rest). It records who,
 * what, on which id, from where and with what outcome — never request bodies, so never a secret.
 */
export const auditPlugin = fp(
  async (app: FastifyInstance, options: { writer: AuditWriter }) => {
    app.addHook('onClose', () => options.writer.close());
    // Most requests are not audited: they pass through a plain callback, without the promise of an async hook.
    app.addHook('onResponse', (request, reply, done) => {
      const action = actionOf(request);
      done();
      if (action) write(request, reply, action);
    });

    function write(request: FastifyRequest, reply: FastifyReply, action: string) {
      const principal = request.principal;
      const body = request.body as { email?: unknown } | undefined;
      const event = {
        id: newId('aud'),
        created_at: nowIso(),
        action,
        outcome: reply.statusCode < 400 ? ('success' as const) : ('failure' as const),
        status_code: reply.statusCode,
        actor_user_id: principal?.userId ?? null,
        actor_key_id: principal?.apiKeyId ?? null,
        actor_via: principal?.via ?? null,
        target_id: (request.params as { id?: string } | undefined)?.id ?? null,
        subject:
          action.startsWith('auth.') && typeof body?.email === 'string'
            ? truncateGraphemes(storableText(body.email), 254)
            : null,
        ip: request.ip,
        request_id: request.id,
      };
      // Not even built when info is off (production's warn): the master key audits every call it makes.
      if ((request.log as { isLevelEnabled?: (level: string) => boolean }).isLevelEnabled?.('info') ?? true)
        request.log.info({ audit: event }, `audit: ${action} ${event.outcome}`);
      options.writer.add(event);
    }
  },
  { name: 'audit' },
);
