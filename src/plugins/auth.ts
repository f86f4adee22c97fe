import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../core/errors.js';
import type { Principal } from '../features/auth/principal.js';
import type { AuthService } from '../features/auth/service.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyInstance {
    /** preHandler: any valid credential. */
    authenticate: (request: FastifyRequest) => Promise<void>;
    /** preHandler: a valid credential with the admin role (403 otherwise). */
    requireAdmin: (request: FastifyRequest) => Promise<void>;
  }
}

/** The caller of an authenticated route; routes behind `authenticate` can rely on it. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('unauthorized', 'missing credentials');
  return request.principal;
}

/** OpenAPI: routes behind auth declare this, so /docs shows the lock and the Authorize button works. */
export const bearerSecurity = [{ bearerAuth: [] }];

export const authPlugin = fp(
  async (app: FastifyInstance, options: { auth: AuthService }) => {
    app.decorateRequest('principal', null);
    const authenticate = async (request: FastifyRequest) => {
      request.principal = await options.auth.authenticate(request.headers.authorization);
    };
    app.decorate('authenticate', authenticate);
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      await authenticate(request);
      if (request.principal?.role !== 'admin')
        throw new AppError('forbidden', 'this action requires the admin role');
    });
  },
  { name: 'auth', dependencies: ['error-handler'] },
);
