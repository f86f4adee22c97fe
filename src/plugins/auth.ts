import type { FastifyInstance, FastifyRequest, onRequestHookHandler, RouteOptions } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';
import type { CredentialWatch } from '../features/auth/credential-watch.js';
import type { Principal } from '../features/auth/principal.js';
import type { AuthService } from '../features/auth/service.js';

/**
 * An auth check: a callback hook when Fastify passes `done` (it returns nothing then), else a promise to
 * await (`await app.authenticate(request)`).
 */
export type AuthCheck = (
  request: FastifyRequest,
  reply?: unknown,
  done?: HookDone,
) => Promise<void> | undefined;
type HookDone = (err?: Error) => void;

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** Any valid credential. Runs at onRequest wherever a route lists it (see `authFirst`). */
    authenticate: AuthCheck;
    /**
     * Any valid credential, sent as `Authorization: Bearer` or as `x-api-key` (how Anthropic's clients send a
     * key; the Messages API accepts both). Runs at onRequest like `authenticate`.
     */
    authenticateAnyKey: AuthCheck;
    /** A valid credential with the admin role (403 otherwise). Runs at onRequest like `authenticate`. */
    requireAdmin: AuthCheck;
    /** Ends open streams and sockets when their credential is revoked, its user disabled or it expires. */
    credentials: CredentialWatch;
  }
}

function admit(request: FastifyRequest, principal: Principal, admin: boolean) {
  request.principal = principal;
  if (admin && principal.role !== 'admin')
    throw new AppError('forbidden', 'this action requires the admin role');
}

/** The caller of an authenticated route; routes behind `authenticate` can rely on it. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('unauthorized', 'missing credentials');
  return request.principal;
}

/** OpenAPI: routes behind auth declare this, so /docs shows the lock and the Authorize button works. */
export const bearerSecurity = [{ bearerAuth: [] }];

/** OpenAPI extension naming the role an operation requires (`admin` on requireAdmin routes). */
export const REQUIRED_ROLE = 'x-required-role';

type Hook = RouteOptions['preHandler'];
const asList = (hook: Hook | RouteOptions['onRequest']) =>
  (hook === undefined ? [] : Array.isArray(hook) ? hook : [hook]) as unknown[];

/**
 * Moves the auth checks a route lists (in preValidation or preHandler) to the end of its onRequest hooks, so
 * every route authenticates — and authorises — before its body is read, parsed or validated: `{}` or a
 * 30,000-message body without credentials costs a header check and answers 401 (issue 19 item 5), and an
 * admin route answers a plain user 403 whatever the body (item 24). Done here once for every route, present
 * and future, rather than trusting each route file to pick the right hook.
 */
function authFirst(route: RouteOptions, admin: unknown, checks: ReadonlySet<unknown>) {
  const moved: unknown[] = [];
  for (const stage of ['preValidation', 'preHandler'] as const) {
    const hooks = asList(route[stage]);
    if (!hooks.some((h) => checks.has(h))) continue;
    moved.push(...hooks.filter((h) => checks.has(h)));
    const rest = hooks.filter((h) => !checks.has(h));
    route[stage] = (rest.length === 0 ? undefined : rest) as Hook;
  }
  if (moved.length === 0) return { adminOnly: false };
  route.onRequest = [...asList(route.onRequest), ...moved] as onRequestHookHandler[];
  return { adminOnly: moved.includes(admin) };
}

export const authPlugin = fp(
  async (app: FastifyInstance, options: { auth: AuthService; credentials: CredentialWatch }) => {
    app.decorateRequest('principal', null);
    app.decorate('credentials', options.credentials);
    const { auth } = options;
    // Each check is a plain function that Fastify runs as a callback hook (`done` given) and other code may
    // await (`done` absent). A cached API key and the master key resolve synchronously: the hook then calls
    // `done` at once, without the promises and async frames of an async hook (issue 26).
    function authenticate(request: FastifyRequest, _reply?: unknown, done?: HookDone) {
      return settle(request, request.headers.authorization, false, done);
    }
    function requireAdmin(request: FastifyRequest, _reply?: unknown, done?: HookDone) {
      return settle(request, request.headers.authorization, true, done);
    }
    function authenticateAnyKey(request: FastifyRequest, _reply?: unknown, done?: HookDone) {
      const key = request.headers['x-api-key'];
      const authorization =
        request.headers.authorization ?? (typeof key === 'string' && key ? `Bearer ${key}` : undefined);
      return settle(request, authorization, false, done);
    }
    function settle(
      request: FastifyRequest,
      authorization: string | undefined,
      admin: boolean,
      done: HookDone | undefined,
    ): Promise<void> | undefined {
      let resolved: Principal | Promise<Principal>;
      try {
        resolved = auth.resolve(authorization);
      } catch (err) {
        if (done === undefined) return Promise.reject(err);
        done(err as Error);
        return undefined;
      }
      if (resolved instanceof Promise) {
        const settled = resolved.then((principal) => admit(request, principal, admin));
        if (done === undefined) return settled;
        settled.then(() => done(), done);
        return undefined;
      }
      try {
        admit(request, resolved, admin);
      } catch (err) {
        if (done === undefined) return Promise.reject(err);
        done(err as Error);
        return undefined;
      }
      if (done === undefined) return Promise.resolve();
      done();
      return undefined;
    }
    app.decorate('authenticate', authenticate);
    app.decorate('authenticateAnyKey', authenticateAnyKey);
    app.decorate('requireAdmin', requireAdmin);
    const checks = new Set<unknown>([authenticate, authenticateAnyKey, requireAdmin]);
    app.addHook('onRoute', (route) => {
      const { adminOnly } = authFirst(route, requireAdmin, checks);
      if (adminOnly && route.schema)
        route.schema = { ...route.schema, [REQUIRED_ROLE]: 'admin' } as RouteOptions['schema'];
    });
  },
  { name: 'auth', dependencies: ['error-handler'] },
);
