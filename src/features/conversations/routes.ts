import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { ResponseCache } from '../../cache/response-cache.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import type { Metrics } from '../../metrics/registry.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { assistantRoutes } from '../assistants/routes.js';
import { AssistantStore } from '../assistants/store.js';
import type { CredentialWatch } from '../auth/credential-watch.js';
import type { Attachments } from '../files/attachments.js';
import type { UsageRecorder } from '../usage/store.js';
import type { ConversationApi } from './context-deps.js';
import { conversationCrudRoutes } from './conversation-routes.js';
import { GenerationFeed } from './feed.js';
import { adminConversationRoutes, type ConversationFlags } from './flags.js';
import { GenerationManager } from './generation-manager.js';
import { generationRoutes } from './generation-routes.js';
import { IdempotencyStore } from './idempotency.js';
import { GenerationLeases } from './leases.js';
import { messageRoutes } from './message-routes.js';
import { RedisEventLog } from './redis-events.js';
import { ConversationSchema, GenerationResultSchema, MessageSchema } from './schemas.js';
import { ConversationService } from './service.js';
import { ConversationStore } from './store.js';
import { sweepOrphanedGenerations } from './sweep.js';
import { cancelElsewhere, finishAbandoned, finishAllAbandoned, type TakeoverDeps } from './takeover.js';
import { websocketRoutes } from './ws-routes.js';

export { sweepOrphanedGenerations } from './sweep.js';

export interface ConversationDeps {
  db: Db;
  gateway: ChatGateway;
  usage: UsageRecorder;
  logger: Logger;
  /** Present when REDIS_URL is set: in-flight generations are shared across replicas through it. */
  redis?: Redis | undefined;
  /** The model used when neither a request, a conversation nor its assistant names one. */
  defaultModel?: string | undefined;
  /** Context windows from configuration (e.g. routing-file aliases), before the built-in table. */
  contextWindow?: ((model: string) => number | undefined) | undefined;
  /** On shutdown, running generations get at most this long (or until the drain period ends) to finish. */
  shutdownGraceMs?: number | undefined;
  /** Replies whose assistant opted in (params.cache_responses) may be served from it. */
  responses?: ResponseCache | undefined;
  /** Streaming rows untouched this long are orphans (their replica died): swept periodically. */
  orphanAfterMs?: number | undefined;
  /** colloquy_active_streams counts conversation SSE streams and WebSockets (label `api`). */
  metrics?: Metrics | undefined;
  /** Revoked keys and disabled users: their streams and sockets end, their running generations stop. */
  credentials?: CredentialWatch | undefined;
  /** Files attached to messages (issue 24); without it a message with `attachments` is refused. */
  attachments?: Attachments | undefined;
  /** Conversations flagged by a crisis referral (issue 22): listed for admins. */
  flags?: ConversationFlags | undefined;
  /** Told after a conversation is deleted (its files go with it). */
  onConversationDeleted?: ((conversationId: string) => Promise<void>) | undefined;
}

const MAINTENANCE_MS = 60_000;
/** How often a replica looks for generations whose replica died (with Redis). */
const TAKEOVER_SCAN_MS = 2_000;

/**
 * The conversation API under /api: assistants, conversations, message trees, generations (SSE, WebSocket,
 * reconnection, cancel). Generations run independently of the connections that watch them.
 */
export async function conversationRoutes(app: FastifyInstance, deps: ConversationDeps) {
  const store = new ConversationStore(deps.db);
  const assistants = new AssistantStore(deps.db);
  const idempotency = new IdempotencyStore(store.db);
  const redisLog = deps.redis ? new RedisEventLog(deps.redis, deps.logger) : undefined;
  const leases = deps.redis ? new GenerationLeases(deps.redis, deps.logger) : undefined;
  const manager = new GenerationManager({
    leases,
    store,
    gateway: deps.gateway,
    usage: deps.usage,
    logger: deps.logger,
    redisLog,
    responses: deps.responses,
    credentials: deps.credentials,
  });
  // With Redis, a generation whose replica died is finished by whichever replica notices first.
  const takeover: TakeoverDeps | undefined =
    redisLog && leases
      ? {
          store,
          redisLog,
          leases,
          logger: deps.logger,
          runsHere: (id) => manager.get(id) !== undefined,
          usage: deps.usage,
          gateway: deps.gateway,
        }
      : undefined;
  const finish = takeover
    ? (id: string) =>
        finishAbandoned(takeover, id).catch((err: unknown) => {
          deps.logger.warn({ err, generationId: id }, 'could not finish an abandoned generation');
          return false;
        })
    : undefined;
  const service = new ConversationService({
    finishAbandoned: finish,
    store,
    assistants,
    idempotency,
    manager,
    gateway: deps.gateway,
    defaultModel: deps.defaultModel,
    contextWindow: deps.contextWindow,
    attachments: deps.attachments,
  });
  const feed = new GenerationFeed({ store, manager, redisLog, finishAbandoned: finish });
  const closing = new AbortController();
  const api: ConversationApi = {
    store,
    assistants,
    service,
    manager,
    feed,
    logger: deps.logger,
    redisLog,
    closing: closing.signal,
    metrics: deps.metrics,
    credentials: deps.credentials,
    finishAbandoned: finish,
    cancelElsewhere: takeover
      ? (id: string) =>
          cancelElsewhere(takeover, id).catch((err: unknown) => {
            deps.logger.warn({ err, generationId: id }, 'could not cancel a generation run elsewhere');
            return 'unknown' as const;
          })
      : undefined,
    leaseTtlMs: leases?.ttlMs,
    onConversationDeleted: deps.onConversationDeleted,
    attachments: deps.attachments,
    flags: deps.flags,
  };

  // Housekeeping: expired idempotency keys, and rows orphaned by a replica that died mid-generation.
  const orphanAfterMs = deps.orphanAfterMs ?? 120_000;
  const maintenance = setInterval(() => {
    Promise.all([
      idempotency.deleteExpired(),
      sweepOrphanedGenerations(deps.db, { staleAfterMs: orphanAfterMs }),
    ])
      .then(([, swept]) => {
        if (swept) deps.logger.warn({ swept }, 'marked orphaned generations partial');
      })
      .catch((err) => deps.logger.warn({ err }, 'conversation maintenance failed'));
  }, MAINTENANCE_MS);
  maintenance.unref();
  // Every few seconds, generations whose replica died (lease expired) are finished, watched or not.
  const takeovers = takeover
    ? setInterval(() => {
        finishAllAbandoned(takeover)
          .then((finished) => {
            if (finished) deps.logger.warn({ finished }, 'finished generations of a replica that stopped');
          })
          .catch((err) => deps.logger.warn({ err }, 'could not look for abandoned generations'));
      }, TAKEOVER_SCAN_MS)
    : undefined;
  takeovers?.unref();

  // Shutdown: running generations get the drain period (until the server ends open streams), then are
  // stopped and saved as partial; reconnection streams and sockets end with them. From close() on, no new
  // generation starts (503, service.ts). Not awaited in preClose: Fastify closes the listener only once every
  // preClose hook is done, and until then it would accept new connections for as long as generations run —
  // requests a passive proxy keeps sending there. The wait is in onClose, which runs once the listener is
  // closed and every connection has ended (these streams and sockets included); onClose hooks run last
  // registered first, so those of what a generation uses (usage ledger, caches: app.ts) wait for this one.
  const drainOver = (app as { shutdownSignal?: AbortSignal }).shutdownSignal;
  let drained: Promise<void> = Promise.resolve();
  app.addHook('preClose', (done) => {
    clearInterval(maintenance);
    clearInterval(takeovers);
    drained = manager.close(deps.shutdownGraceMs ?? 30_000, drainOver).finally(() => closing.abort());
    // Its failure is thrown in onClose; until then Node must not take it for an unhandled rejection.
    drained.catch(() => {});
    done();
  });
  app.addHook('onClose', () => drained);

  app.addSchema(ConversationSchema);
  app.addSchema(MessageSchema);
  app.addSchema(GenerationResultSchema);
  await app.register(assistantRoutes, { assistants, gateway: deps.gateway });
  await app.register(conversationCrudRoutes, api);
  await app.register(messageRoutes, api);
  await app.register(generationRoutes, api);
  await app.register(websocketRoutes, api);
  if (deps.flags) await app.register(adminConversationRoutes, { flags: deps.flags });
}
