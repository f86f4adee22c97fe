import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { createCache } from './cache/index.js';
import { ResponseCache } from './cache/response-cache.js';
import type { Config } from './config/load-config.js';
import { newId } from './core/ids.js';
import { deferredRequestLogger, type Logger } from './core/logger.js';
import type { DatabaseHandle } from './db/database.js';
import { anthropicMessagesRoutes } from './features/anthropic-messages/routes.js';
import { apiKeyRoutes } from './features/api-keys/routes.js';
import { ApiKeyStore } from './features/api-keys/store.js';
import { UsableKeyCache } from './features/api-keys/usable-key-cache.js';
import { auditPlugin } from './features/audit/plugin.js';
import { auditRoutes } from './features/audit/routes.js';
import { AuditWriter } from './features/audit/writer.js';
import { AccessTokens } from './features/auth/access-tokens.js';
import { CredentialWatch } from './features/auth/credential-watch.js';
import { LoginThrottle } from './features/auth/login-throttle.js';
import { RefreshTokenStore } from './features/auth/refresh-tokens.js';
import { authRoutes } from './features/auth/routes.js';
import { AuthService } from './features/auth/service.js';
import { SessionCache } from './features/auth/session-cache.js';
import { completionsRoutes } from './features/completions/routes.js';
import { ConversationFlags } from './features/conversations/flags.js';
import { pruneConversations } from './features/conversations/retention.js';
import { conversationRoutes } from './features/conversations/routes.js';
import { embeddingsRoutes } from './features/embeddings/routes.js';
import { Attachments } from './features/files/attachments.js';
import { filesRoutes } from './features/files/routes.js';
import { FileSchema } from './features/files/schemas.js';
import { FilesService } from './features/files/service.js';
import { createStorage, type FileStorage } from './features/files/storage.js';
import { FileStore } from './features/files/store.js';
import { aliasVision } from './features/files/vision.js';
import { GuardrailChanges } from './features/guardrails/changes.js';
import { GuardrailEventRecorder } from './features/guardrails/events.js';
import { GuardedGateway } from './features/guardrails/guarded-gateway.js';
import { PRESETS } from './features/guardrails/presets.js';
import { GuardrailResolution } from './features/guardrails/resolver.js';
import { guardrailRoutes } from './features/guardrails/routes.js';
import { MemoryBreakClock, RedisBreakClock } from './features/guardrails/sessions.js';
import { GuardrailStore } from './features/guardrails/store.js';
import { guardrailVerdictRoutes } from './features/guardrails/verdict-routes.js';
import { healthRoutes } from './features/health/routes.js';
import { BudgetService } from './features/limits/budgets.js';
import { LimitInvalidations } from './features/limits/invalidations.js';
import { LimitedGateway } from './features/limits/limited-gateway.js';
import { LimitOverrideStore } from './features/limits/overrides.js';
import { RateLimitService } from './features/limits/rate-limits.js';
import { limitsRoutes } from './features/limits/routes.js';
import { AccountMail } from './features/mail/account-mail.js';
import { MailOutbox } from './features/mail/outbox.js';
import { mailRoutes } from './features/mail/routes.js';
import { createSmtpTransport } from './features/mail/transport.js';
import { openAiV1Routes } from './features/openai-v1/routes.js';
import { providerRoutes } from './features/providers/routes.js';
import { responsesRoutes } from './features/responses/routes.js';
import { ResponsesStore } from './features/responses/store.js';
import { PriceTable } from './features/usage/prices.js';
import { RejectionCounter } from './features/usage/rejections.js';
import { usageRoutes } from './features/usage/routes.js';
import { UsageRecorder } from './features/usage/store.js';
import { accountAdminRoutes } from './features/users/account-admin.js';
import { userRoutes } from './features/users/routes.js';
import { UserStore } from './features/users/store.js';
import { hostAllowList } from './http/allowed-hosts.js';
import { UserSchema } from './http/schemas.js';
import { buildSerializer } from './http/serializer.js';
import { buildValidator } from './http/validator.js';
import { createMetrics, type Metrics } from './metrics/registry.js';
import { apiBodiesPlugin } from './plugins/api-bodies.js';
import { authPlugin } from './plugins/auth.js';
import { consolePlugin } from './plugins/console.js';
import { errorHandlerPlugin } from './plugins/error-handler.js';
import { jsonBodyPlugin } from './plugins/json-body.js';
import { lifecyclePlugin } from './plugins/lifecycle.js';
import { metricsPlugin } from './plugins/metrics.js';
import { openapiPlugin } from './plugins/openapi.js';
import { securityPlugin } from './plugins/security.js';
import { tracingPlugin } from './plugins/tracing.js';
import { providerSecrets } from './providers/cloud-config.js';
import { createGateway } from './providers/registry.js';
import type { ChatGateway } from './providers/router/types.js';
import { estimateUsage } from './providers/tokens.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  redis?: Redis | undefined;
  /** CACHE_REDIS_URL's client: the response cache lives there instead of on `redis`. */
  cacheRedis?: Redis | undefined;
  /** Tests hand in a scripted gateway; otherwise one is built from the configured providers. */
  gateway?: ChatGateway | undefined;
  /** Shared by tests that build several apps; otherwise each app makes its own registry. */
  metrics?: Metrics | undefined;
  /** Tests hand in a storage of their choice; otherwise the configured one (disk or S3). */
  fileStorage?: FileStorage | undefined;
  /** Set by the server once shutdown begins; readiness reports it. */
  isDraining?: () => boolean;
  /** Tests hand in a clock (epoch ms) for session lengths (the break reminder); otherwise Date.now. */
  now?: (() => number) | undefined;
  /**
   * How long a replica keeps using a copy no announcement invalidated: the limit stores' cache TTL (5 s) and
   * the stored guardrails' periodic reload (30 s), both only a fallback for a lost Redis announcement. Tests
   * of propagation across replicas stretch it, so that only the announcement can carry a change while they wait.
   */
  fallbackReloadMs?: number | undefined;
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
    // Requests arriving on open connections while the server closes are served (with `Connection: close`), not
    // refused: a proxy never replays a POST it already sent (plugins/lifecycle.ts).
    return503OnClosing: false,
    // removeAdditional: unknown fields are refused with a 400 naming them, not dropped silently (api-bodies).
    ajv: { customOptions: { allErrors: false, removeAdditional: false } },
    schemaController: { compilersFactory: { buildSerializer, buildValidator } },
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
  if (config.http.allowedHosts.length) app.addHook('onRequest', hostAllowList(config.http.allowedHosts));

  const users = new UserStore(database.db);
  const keyCache = new UsableKeyCache({ redis: deps.redis, logger: deps.logger });
  app.addHook('onClose', () => keyCache.close());
  const apiKeys = new ApiKeyStore(database.db, keyCache);
  const sessions = new SessionCache({ redis: deps.redis, logger: deps.logger });
  app.addHook('onClose', () => sessions.close());
  const refreshTokens = new RefreshTokenStore(database.db, config.auth.refreshTokenTtlSeconds, sessions);
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
    requireEmailVerification: config.auth.requireEmailVerification,
  });
  // Mail (issue 24): every replica runs the outbox's sender; claims keep them from sending a mail twice.
  const outbox = config.mail
    ? new MailOutbox({
        db: database.db,
        transport: createSmtpTransport(config.mail),
        from: config.mail.from,
        domain: new URL(config.mail.publicUrl).hostname,
        retryInitialMs: config.mail.retryInitialMs,
        pollIntervalMs: config.mail.pollIntervalMs,
        metrics,
        logger: deps.logger,
      })
    : undefined;
  if (outbox) {
    app.addHook('onReady', async () => outbox.start());
    app.addHook('onClose', () => outbox.stop());
  }
  const accountMail = new AccountMail({
    db: database.db,
    users,
    refreshTokens,
    outbox,
    publicUrl: config.mail?.publicUrl,
    redis: deps.redis,
    logger: deps.logger,
  });

  const tracing = config.tracing
    ? // Loaded only when tracing is on: the OpenTelemetry SDK is ~15 MiB of RSS an idle server need not hold.
      new (await import('./tracing/tracing.js')).Tracing({ ...config.tracing, track: config.metrics.track })
    : undefined;
  if (tracing) await app.register(tracingPlugin, { tracing });
  // Loaded only when SENTRY_DSN is set: without it the SDK is never imported (idle memory, start-up time).
  const errorReporter = config.errorTracking
    ? (await import('./error-tracking/sentry.js')).startSentry({
        ...config.errorTracking,
        secrets: [
          config.secretKey,
          config.adminKey,
          config.database.dialect === 'sqlite' ? undefined : config.database.url,
          config.redisUrl,
          ...providerSecrets(config.providers),
        ].filter((s): s is string => Boolean(s)),
      })
    : undefined;
  // Queued reports are sent at shutdown, for at most 2 s.
  if (errorReporter) app.addHook('onClose', () => errorReporter.close(2_000));
  await app.register(errorHandlerPlugin, { reporter: errorReporter });
  await app.register(jsonBodyPlugin);
  await app.register(apiBodiesPlugin);
  await app.register(lifecyclePlugin, {
    isDraining: deps.isDraining ?? (() => false),
    maxEventLoopDelayMs: config.http.overload.maxEventLoopDelayMs,
    maxHeapBytes: config.http.overload.maxHeapBytes,
    maxRssBytes: config.http.overload.maxRssBytes,
    maxConcurrentRequests: config.http.overload.maxConcurrentRequests,
    inFlightGauge: metrics.httpInFlight,
  });
  await app.register(securityPlugin, {
    allowedOrigins: config.http.allowedOrigins,
    httpsOnly: config.http.httpsOnly,
  });
  app.addSchema(UserSchema);
  await app.register(openapiPlugin, { expose: config.http.enableDocs });
  // Revocations (this replica's, and every other's through the key cache's Redis channel) end open streams.
  const credentials = new CredentialWatch({
    stillValid: (principal) => auth.stillValid(principal),
    logger: deps.logger,
  });
  keyCache.onForget((kind, id) => credentials.notice(kind, id));
  await app.register(authPlugin, { auth, credentials });
  const audit = new AuditWriter(database.db, deps.logger);
  await app.register(auditPlugin, { writer: audit });

  await app.register(healthRoutes, {
    database,
    redis: deps.redis,
    environment: config.env,
    isDraining: deps.isDraining ?? (() => false),
  });
  await app.register(authRoutes, {
    auth,
    users,
    allowSignup: config.auth.allowSignup,
    verification: config.auth.requireEmailVerification ? accountMail : undefined,
  });
  await app.register(mailRoutes, {
    mail: accountMail,
    auth,
    allowSignup: config.auth.allowSignup,
    requireEmailVerification: config.auth.requireEmailVerification,
  });
  await app.register(userRoutes, { users, auth, refreshTokens, notices: accountMail });
  await app.register(apiKeyRoutes, { apiKeys, users, notices: accountMail, db: database.db });

  const prices = new PriceTable(config.providers.routing?.prices);
  // Budgets and overrides changed on one replica bind every replica at once (Redis pub/sub).
  // Guardrails (issue 22) sit inside the limits, around the router: every protocol and the conversation API
  // reach the model through them. The preset's, the routing file's and the stored ones (admin API), by scope;
  // with none at all a request goes straight through (the resolver answers undefined).
  const routing = config.providers.routing;
  const guardrailChanges = new GuardrailChanges({ redis: deps.redis, logger: deps.logger });
  const guardrailStore = new GuardrailStore(database.db, {
    changes: guardrailChanges,
    logger: deps.logger,
    ...(deps.fallbackReloadMs ? { refreshMs: deps.fallbackReloadMs } : {}),
  });
  await guardrailStore.reload();
  app.addHook('onClose', async () => {
    guardrailStore.close();
    guardrailChanges.close();
  });
  const guardrailResolution = new GuardrailResolution({
    base: [
      ...(config.guardrailsPreset ? PRESETS[config.guardrailsPreset]!.guardrails : []).filter(
        (p) => !routing?.guardrails?.some((g) => g.name === p.name),
      ),
      ...(routing?.guardrails ?? []),
    ],
    store: guardrailStore,
    holdbackChars: routing?.guardrail_holdback_chars,
    logger: deps.logger,
    env: config.secretEnv,
  });
  const guardrailEvents = new GuardrailEventRecorder(database.db, { logger: deps.logger });
  const conversationFlags = new ConversationFlags(database.db);
  // Minor mode's break reminder: one session per user across replicas with Redis.
  const clock = deps.now ?? Date.now;
  const breaks = deps.redis
    ? new RedisBreakClock(deps.redis, clock, deps.logger)
    : new MemoryBreakClock(clock);
  app.addHook('onClose', () => guardrailEvents.close());
  const guarded = (inner: ChatGateway): ChatGateway =>
    new GuardedGateway(
      inner,
      guardrailResolution.resolve,
      (requestId, verdict) => {
        metrics.guardrailVerdicts.inc({
          guardrail: verdict.guardrail,
          stage: verdict.stage,
          action: verdict.action,
        });
        guardrailEvents.record(requestId, verdict);
      },
      deps.logger,
      {
        // A crisis referral in the conversation API flags its conversation for the operator (issue 22).
        onReferral: async (notice) => {
          if (notice.conversationId)
            await conversationFlags.flag(notice.conversationId, {
              reason: 'crisis',
              guardrail: notice.guardrail,
              category: notice.category,
            });
        },
        breaks,
        // A moderation check's chat model works for the caller: its row (protocol `guardrail`) is theirs, and
        // once it answered its tokens and cost settle against their limits and budgets through the gateway
        // that admitted their request (it reserved nothing beforehand, and is never refused: see
        // LimitedGateway.settleOnBehalf).
        onClassified: async ({ request, requestId, body, result, latencyMs }) => {
          const principal = request.caller?.principal;
          const spent =
            result.completion.usage ??
            (await estimateUsage(body.messages, result.completion.choices[0]?.message.content ?? ''));
          void usage.record({
            requestId,
            protocol: 'guardrail',
            userId: principal?.userId ?? null,
            apiKeyId: principal?.apiKeyId ?? null,
            model: body.model,
            route: result.route,
            usage: spent,
            latencyMs,
            status: 'ok',
          });
          if (principal) await gateway.settleOnBehalf(principal, spent, result.route.upstreamModel);
        },
      },
    );
  const limitInvalidations = new LimitInvalidations({ redis: deps.redis, logger: deps.logger });
  app.addHook('onClose', async () => limitInvalidations.close());
  const overrides = new LimitOverrideStore(database.db, {
    invalidations: limitInvalidations,
    cacheTtlMs: deps.fallbackReloadMs,
  });
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
    invalidations: limitInvalidations,
    cacheTtlMs: deps.fallbackReloadMs,
    metrics,
    logger: deps.logger,
    timeZone: config.timeZone,
  });
  const gateway = new LimitedGateway(guarded(deps.gateway ?? createGateway(config.providers, deps.logger)), {
    rateLimits,
    budgets,
    prices,
  });
  gateway.onAttemptFailed = (provider, code) => metrics.upstreamErrors.inc({ provider, code });
  const rejections = new RejectionCounter(database.db, { logger: deps.logger, timeZone: config.timeZone });
  gateway.onRejected = (principal, reason) => rejections.count(principal, reason);
  app.addHook('onClose', () => rejections.close());
  await app.register(metricsPlugin, {
    metrics,
    token: config.metrics.token,
    tokenRequired: config.env === 'production',
    beforeScrape: async () => {
      const pool = database.poolStats();
      if (pool) for (const [state, value] of Object.entries(pool)) metrics.dbPool.set({ state }, value);
      for (const d of gateway.deploymentStates?.() ?? [])
        metrics.circuitState.set({ deployment: d.deployment }, d.state);
      if (outbox) {
        const depth = await outbox.depth();
        metrics.mailOutbox.set({ status: 'pending' }, depth.pending);
        metrics.mailOutbox.set({ status: 'failed' }, depth.failed);
      }
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
  usage.isKnownModel = (model) => gateway.isKnownModel(model);
  // Usage rows are written in batches: whatever is still queued is written before the database closes, and
  // so are the rows of streams whose answer has ended but whose row is not queued yet (bounded by the drain).
  app.addHook('onClose', () => usage.close(config.http.shutdownTimeoutMs));
  budgets.flushLedger = () => usage.flush();
  // A Redis of its own (CACHE_REDIS_URL) may evict cached answers under memory pressure without touching the
  // limits, budgets, leases and revocations on the main one (which keeps noeviction).
  const cache = createCache({
    redis: deps.cacheRedis ?? deps.redis,
    logger: deps.logger,
    maxEntries: config.cache.maxEntries,
    maxBytes: config.cache.maxBytes,
  });
  const responses =
    config.cache.responseTtlMs > 0
      ? new ResponseCache(cache, {
          ttlMs: config.cache.responseTtlMs,
          // Answers depend on the routing: a new routing file starts a fresh cache.
          // Guardrails change what an answer may hold: a new list starts a fresh cache too.
          salt: JSON.stringify(
            routing?.guardrails?.length
              ? [routing.models ?? [], routing.guardrails]
              : (config.providers.routing?.models ?? []),
          ),
          // The stored guardrails that apply to the caller, by their content: a change starts fresh entries.
          variant: (who) =>
            guardrailResolution.fingerprint({
              role: who.role,
              keyId: who.apiKeyId,
              assistantId: who.assistantId,
            }),
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
  // Files (issue 24): uploads, and their use by the conversation API and /v1 (images, document text).
  const fileStore = new FileStore(database.db);
  const fileStorage = deps.fileStorage ?? (await createStorage(config.files.storage));
  const files = new FilesService({
    store: fileStore,
    storage: fileStorage,
    config: config.files,
    logger: deps.logger,
  });
  const visionOf = aliasVision(config.providers.routing?.models ?? []);
  const attachments = new Attachments({
    store: fileStore,
    storage: fileStorage,
    vision: (model) => visionOf.get(model),
  });
  app.addSchema(FileSchema);
  await app.register(filesRoutes, { files, maxUploadBytes: config.files.maxUploadBytes });
  await app.register(accountAdminRoutes, {
    db: database.db,
    users,
    apiKeys,
    refreshTokens,
    files,
    mail: accountMail,
    limits: { budgets: budgets.store, overrides },
  });
  await app.register(openAiV1Routes, { gateway, usage, metrics, responses, attachments });
  await app.register(anthropicMessagesRoutes, { gateway, usage, metrics, responses });
  await app.register(embeddingsRoutes, { gateway, usage, responses });
  await app.register(completionsRoutes, { gateway, usage, metrics });
  const storedResponses = new ResponsesStore(database.db);
  await app.register(responsesRoutes, { gateway, usage, metrics, responses, store: storedResponses });
  await app.register(usageRoutes, { db: database.db, recorder: usage, timeZone: config.timeZone });
  await app.register(providerRoutes, { gateway });
  await app.register(consolePlugin, {});
  await app.register(auditRoutes, { db: database.db, writer: audit });
  await app.register(limitsRoutes, { budgets, overrides, cache });
  await app.register(guardrailVerdictRoutes, { db: database.db, recorder: guardrailEvents });
  await app.register(guardrailRoutes, {
    db: database.db,
    store: guardrailStore,
    resolution: guardrailResolution,
    timeZone: config.timeZone,
    now: deps.now,
  });
  // The routing file's `context_window` of an alias is what conversation trimming fits a prompt into.
  const contextWindows = new Map(
    (config.providers.routing?.models ?? []).flatMap((m) =>
      m.context_window ? [[m.name, m.context_window] as const] : [],
    ),
  );
  await app.register(conversationRoutes, {
    db: database.db,
    gateway,
    usage,
    logger: deps.logger,
    redis: deps.redis,
    responses,
    contextWindow: (model) => contextWindows.get(model),
    defaultModel: config.providers.defaultModel,
    metrics,
    credentials,
    attachments,
    flags: conversationFlags,
    // Running generations get the whole drain period (SHUTDOWN_TIMEOUT), not a fixed 30 s.
    shutdownGraceMs: config.http.shutdownTimeoutMs,
    // A deleted conversation's files go with it.
    onConversationDeleted: async () => {
      await files
        .pruneDetached()
        .catch((err) =>
          deps.logger.warn({ err }, 'files of a deleted conversation could not be removed yet'),
        );
    },
  });
  if (config.conversationRetentionDays > 0) {
    // Hourly and bounded; every replica may run it (deletes are idempotent).
    const prune = () =>
      Promise.all([
        pruneConversations(database.db, { retentionDays: config.conversationRetentionDays })
          .then(
            (deleted) => metrics.retentionDeleted.inc({ kind: 'conversations' }, deleted),
            (err) => deps.logger.warn({ err }, 'conversation retention failed; retrying in an hour'),
          )
          // Files go with their conversations (those just pruned, and any a failed run left behind).
          .then(() => files.pruneDetached())
          .then(
            (deleted) => metrics.retentionDeleted.inc({ kind: 'files' }, deleted),
            (err) => deps.logger.warn({ err }, 'file retention failed; retrying in an hour'),
          ),
        // Stored Responses API responses hold prompts and replies too: the same retention.
        storedResponses.prune({ retentionDays: config.conversationRetentionDays }).then(
          (deleted) => metrics.retentionDeleted.inc({ kind: 'responses' }, deleted),
          (err) => deps.logger.warn({ err }, 'stored responses retention failed; retrying in an hour'),
        ),
      ]);
    const timer = setInterval(prune, 3_600_000);
    timer.unref();
    app.addHook('onReady', async () => void prune());
    app.addHook('onClose', async () => clearInterval(timer));
  }
  return app;
}
