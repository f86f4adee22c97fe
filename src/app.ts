import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { createCache } from './cache/index.js';
import { ResponseCache } from './cache/response-cache.js';
import type { Config } from './config/load-config.js';
import { newId } from './core/ids.js';
import { deferredRequestLogger, type Logger } from './core/logger.js';
import type { DatabaseHandle } from './db/database.js';
import { apiKeyRoutes } from './features/api-keys/routes.js';
import { ApiKeyStore } from './features/api-keys/store.js';
import { UsableKeyCache } from './features/api-keys/usable-key-cache.js';
import { auditPlugin } from './features/audit/plugin.js';
import { auditRoutes } from './features/audit/routes.js';
import { AccessTokens } from './features/auth/access-tokens.js';
import { LoginThrottle } from './features/auth/login-throttle.js';
import { RefreshTokenStore } from './features/auth/refresh-tokens.js';
import { authRoutes } from './features/auth/routes.js';
import { AuthService } from './features/auth/service.js';
import { pruneConversations } from './features/conversations/retention.js';
import { conversationRoutes } from './features/conversations/routes.js';
import { healthRoutes } from './features/health/routes.js';
import { BudgetService } from './features/limits/budgets.js';
import { LimitedGateway } from './features/limits/limited-gateway.js';
import { LimitOverrideStore } from './features/limits/overrides.js';
import { RateLimitService } from './features/limits/rate-limits.js';
import { limitsRoutes } from './features/limits/routes.js';
import { openAiV1Routes } from './features/openai-v1/routes.js';
import { providerRoutes } from './features/providers/routes.js';
import { PriceTable } from './features/usage/prices.js';
import { RejectionCounter } from './features/usage/rejections.js';
import { usageRoutes } from './features/usage/routes.js';
import { UsageRecorder } from './features/usage/store.js';
import { userRoutes } from './features/users/routes.js';
import { UserStore } from './features/users/store.js';
import { UserSchema } from './http/schemas.js';
import { buildSerializer } from './http/serializer.js';
import { createMetrics, type Metrics } from './metrics/registry.js';
import { authPlugin } from './plugins/auth.js';
import { consolePlugin } from './plugins/console.js';
import { errorHandlerPlugin } from './plugins/error-handler.js';
import { lifecyclePlugin } from './plugins/lifecycle.js';
import { metricsPlugin } from './plugins/metrics.js';
import { openapiPlugin } from './plugins/openapi.js';
import { securityPlugin } from './plugins/security.js';
import { tracingPlugin } from './plugins/tracing.js';
import { createGateway } from './providers/registry.js';
import type { ChatGateway } from './providers/router/types.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  redis?: Redis | undefined;
  /** Tests hand in a scripted gateway; otherwise one is built from the configured providers. */
  gateway?: ChatGateway | undefined;
  /** Shared by tests that build several apps; otherwise each app makes its own registry. */
  metrics?: Metrics | undefined;
  /** Set by the server once shutdown begins; readiness reports it. */
  isDraining?: () => boolean;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

declare module 'fastify' {
  interface FastifyInstance {
    shutdownSignal: AbortSignal;
    endOpenStreams: () => void;
  }
}

/** Builds the whole application without listening: the server listens, tests use inject() or port 0. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database } = deps;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Each request's logger is made when it first writes a line (most write none at LOG_LEVEL=warn).
    childLoggerFactory: (logger, bindings, options) =>
      deferredRequestLogger(logger as Logger, bindings, options) as FastifyBaseLogger,
    // An incoming X-Request-Id is kept when it is safe to log, so one id follows a request across services.
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newId('req');
    },
    bodyLimit: config.http.bodyLimit,
    // A hop count is valid at run time (proxy-addr); the type declarations omit it.
    trustProxy: config.http.trustProxy as boolean | string[],
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // SSE streams are long-lived; shutdown ends them itself (see server.ts), idle sockets close at once.
    forceCloseConnections: 'idle',
    ajv: { customOptions: { allErrors: false } },
    schemaController: { compilersFactory: { buildSerializer } },
  });
  const metrics = deps.metrics ?? createMetrics({ track: config.metrics.track });
  // Aborted when the shutdown drain period is over: streams still open end (saved as partial) so the
  // process can exit.
  const shutdown = new AbortController();
  app.decorate('shutdownSignal', shutdown.signal);
  app.decorate('endOpenStreams', () => shutdown.abort());
  database.observeQueries((ms) => metrics.dbQueryDuration.observe({ dialect: database.dialect }, ms / 1000));
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });

  const users = new UserStore(database.db);
  const keyCache = new UsableKeyCache({ redis: deps.redis, logger: deps.logger });
  app.addHook('onClose', () => keyCache.close());
  const apiKeys = new ApiKeyStore(database.db, keyCache);
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

  const tracing = config.tracing
    ? // Loaded only when tracing is on: the OpenTelemetry SDK is ~15 MiB of RSS an idle server need not hold.
      new (await import('./tracing/tracing.js')).Tracing({ ...config.tracing, track: config.metrics.track })
    : undefined;
  if (tracing) await app.register(tracingPlugin, { tracing });
  await app.register(errorHandlerPlugin);
  await app.register(lifecyclePlugin, {
    isDraining: deps.isDraining ?? (() => false),
    maxEventLoopDelayMs: config.http.overload.maxEventLoopDelayMs,
    maxHeapBytes: config.http.overload.maxHeapBytes,
    maxConcurrentRequests: config.http.overload.maxConcurrentRequests,
    inFlightGauge: metrics.httpInFlight,
  });
  await app.register(securityPlugin, {
    allowedOrigins: config.http.allowedOrigins,
    httpsOnly: config.http.httpsOnly,
  });
  app.addSchema(UserSchema);
  await app.register(openapiPlugin);
  await app.register(authPlugin, { auth });
  await app.register(auditPlugin, { db: database.db });

  await app.register(healthRoutes, {
    database,
    redis: deps.redis,
    environment: config.env,
    isDraining: deps.isDraining ?? (() => false),
  });
  await app.register(authRoutes, { auth, users, allowSignup: config.auth.allowSignup });
  await app.register(userRoutes, { users, auth, refreshTokens });
  await app.register(apiKeyRoutes, { apiKeys, users });

  const prices = new PriceTable(config.providers.routing?.prices);
  const overrides = new LimitOverrideStore(database.db);
  const rateLimits = new RateLimitService({
    config: config.limits.rateLimits,
    redis: deps.redis,
    overrides,
    metrics,
    logger: deps.logger,
  });
  app.addHook('onClose', () => rateLimits.close());
  const budgets = new BudgetService({
    db: database.db,
    redis: deps.redis,
    failMode: config.limits.rateLimits.failMode,
    metrics,
    logger: deps.logger,
  });
  const gateway = new LimitedGateway(deps.gateway ?? createGateway(config.providers, deps.logger), {
    rateLimits,
    budgets,
    prices,
  });
  gateway.onAttemptFailed = (provider, code) => metrics.upstreamErrors.inc({ provider, code });
  const rejections = new RejectionCounter(database.db, { logger: deps.logger });
  gateway.onRejected = (principal, reason) => rejections.count(principal, reason);
  app.addHook('onClose', () => rejections.close());
  await app.register(metricsPlugin, {
    metrics,
    token: config.metrics.token,
    beforeScrape: async () => {
      const pool = database.poolStats();
      if (pool) for (const [state, value] of Object.entries(pool)) metrics.dbPool.set({ state }, value);
      for (const d of gateway.deploymentStates?.() ?? [])
        metrics.circuitState.set({ deployment: d.deployment }, d.state);
      if (deps.redis)
        metrics.redisUp.set(
          await deps.redis.ping().then(
            () => 1,
            () => 0,
          ),
        );
    },
  });
  const usage = new UsageRecorder(database.db, prices, deps.logger, metrics, tracing);
  // Usage rows are written in batches: whatever is still queued is written before the database closes.
  app.addHook('onClose', () => usage.close());
  budgets.flushLedger = () => usage.flush();
  const cache = createCache({
    redis: deps.redis,
    logger: deps.logger,
    maxEntries: config.cache.maxEntries,
    maxBytes: config.cache.maxBytes,
  });
  const responses =
    config.cache.responseTtlMs > 0
      ? new ResponseCache(cache, {
          ttlMs: config.cache.responseTtlMs,
          // Answers depend on the routing: a new routing file starts a fresh cache.
          salt: JSON.stringify(config.providers.routing?.models ?? []),
          onLookup: (event) => {
            metrics.cacheRequests.inc({ namespace: 'responses', result: event.result });
            if (event.result === 'hit' && event.usage && event.route) {
              const { prompt_tokens, completion_tokens } = event.usage;
              metrics.cacheSavedUsd.inc(
                prices.cost(event.route.upstreamModel, prompt_tokens, completion_tokens),
              );
            }
          },
        })
      : undefined;
  await app.register(openAiV1Routes, { gateway, usage, metrics, responses });
  await app.register(usageRoutes, { db: database.db, recorder: usage });
  await app.register(providerRoutes, { gateway });
  await app.register(consolePlugin, {});
  await app.register(auditRoutes, { db: database.db });
  await app.register(limitsRoutes, { budgets, overrides, cache });
  await app.register(conversationRoutes, {
    db: database.db,
    gateway,
    usage,
    logger: deps.logger,
    redis: deps.redis,
    responses,
  });
  if (config.conversationRetentionDays > 0) {
    // Hourly and bounded; every replica may run it (deletes are idempotent).
    const prune = () =>
      pruneConversations(database.db, { retentionDays: config.conversationRetentionDays }).then(
        (deleted) => metrics.retentionDeleted.inc({ kind: 'conversations' }, deleted),
        (err) => deps.logger.warn({ err }, 'conversation retention failed; retrying in an hour'),
      );
    const timer = setInterval(prune, 3_600_000);
    timer.unref();
    app.addHook('onReady', async () => void prune());
    app.addHook('onClose', async () => clearInterval(timer));
  }
  return app;
}
