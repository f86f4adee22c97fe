import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Config } from './config/load-config.js';
import { newId } from './core/ids.js';
import type { Logger } from './core/logger.js';
import type { DatabaseHandle } from './db/database.js';
import { apiKeyRoutes } from './features/api-keys/routes.js';
import { ApiKeyStore } from './features/api-keys/store.js';
import { AccessTokens } from './features/auth/access-tokens.js';
import { LoginThrottle } from './features/auth/login-throttle.js';
import { RefreshTokenStore } from './features/auth/refresh-tokens.js';
import { authRoutes } from './features/auth/routes.js';
import { AuthService } from './features/auth/service.js';
import { healthRoutes } from './features/health/routes.js';
import { userRoutes } from './features/users/routes.js';
import { UserStore } from './features/users/store.js';
import { UserSchema } from './http/schemas.js';
import { authPlugin } from './plugins/auth.js';
import { errorHandlerPlugin } from './plugins/error-handler.js';
import { openapiPlugin } from './plugins/openapi.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  redis?: Redis | undefined;
  /** Set by the server once shutdown begins; readiness reports it. */
  isDraining?: () => boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds the whole application without listening: the server listens, tests use inject() or port 0. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // An incoming X-Request-Id is kept when it is safe to log, so one id follows a request across services.
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newId('req');
    },
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { allErrors: false } },
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  const users = new UserStore(database.db);
  const apiKeys = new ApiKeyStore(database.db);
  const refreshTokens = new RefreshTokenStore(database.db, config.auth.refreshTokenTtlSeconds);
  const auth = new AuthService({
    users,
    apiKeys,
    refreshTokens,
    accessTokens: new AccessTokens(config.secretKey, config.auth.accessTokenTtlSeconds),
    throttle: new LoginThrottle({
      maxFailures: config.auth.loginMaxFailures,
      windowSeconds: config.auth.loginWindowSeconds,
      redis: deps.redis,
    }),
    masterKey: config.adminKey,
  });

  await app.register(errorHandlerPlugin);
  app.addSchema(UserSchema);
  await app.register(openapiPlugin);
  await app.register(authPlugin, { auth });

  await app.register(healthRoutes, {
    database,
    redis: deps.redis,
    environment: config.env,
    isDraining: deps.isDraining ?? (() => false),
  });
  await app.register(authRoutes, { auth, users, allowSignup: config.auth.allowSignup });
  await app.register(userRoutes, { users, auth, refreshTokens });
  await app.register(apiKeyRoutes, { apiKeys, users });
  return app;
}
