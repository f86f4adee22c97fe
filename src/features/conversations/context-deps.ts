import type { FastifyRequest } from 'fastify';
import Type from 'typebox';
import { AppError, type ErrorBody } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Metrics } from '../../metrics/registry.js';
import { principalOf } from '../../plugins/auth.js';
import type { AssistantStore } from '../assistants/store.js';
import type { CredentialWatch } from '../auth/credential-watch.js';
import type { Attachments } from '../files/attachments.js';
import type { GenerationFeed } from './feed.js';
import type { ConversationFlags } from './flags.js';
import type { GenerationManager } from './generation-manager.js';
import type { RedisEventLog } from './redis-events.js';
import type { Caller, ConversationService } from './service.js';
import type { ConversationStore } from './store.js';

/** What the conversation API's route files share; built once by conversationRoutes. */
export interface ConversationApi {
  store: ConversationStore;
  assistants: AssistantStore;
  service: ConversationService;
  manager: GenerationManager;
  feed: GenerationFeed;
  logger: Logger;
  redisLog?: RedisEventLog | undefined;
  /** Aborts when the server closes: open event streams end. */
  closing: AbortSignal;
  /** colloquy_active_streams counts this API's SSE streams and WebSockets too. */
  metrics?: Metrics | undefined;
  /** Ends streams and sockets whose credential is revoked, whose user is disabled or that expire. */
  credentials?: CredentialWatch | undefined;
  /** With Redis: finishes a generation whose replica died (its lease expired); true when it did. */
  finishAbandoned?: ((generationId: string) => Promise<boolean>) | undefined;
  /** How long a dead replica's lease lasts (with Redis). */
  leaseTtlMs?: number | undefined;
  /** Told after a conversation is deleted (its files go with it, issue 24). */
  onConversationDeleted?: ((conversationId: string) => Promise<void>) | undefined;
  /** Files attached to messages: listed with each message. */
  attachments?: Attachments | undefined;
  /** Conversations flagged by a crisis referral: admins see the flag on their conversations. */
  flags?: ConversationFlags | undefined;
  /** With Redis: asks the replica running a generation to stop it, or finishes it here if that one is gone. */
  cancelElsewhere?: ((generationId: string) => Promise<'finished' | 'asked' | 'unknown'>) | undefined;
}

/** Ends an event stream (with `event: closed`) when the request's credential stops being valid. */
export function closeOnRevocation(
  api: ConversationApi,
  request: FastifyRequest,
  events: { closeWith(error: ErrorBody['error']): void },
): () => void {
  if (!api.credentials) return () => {};
  return api.credentials.watch(principalOf(request), (reason) => events.closeWith(reason.toBody().error), {
    expiry: true,
  });
}

/** The `api` label of colloquy_active_streams for a conversation SSE stream or WebSocket. */
export type ConversationStreamKind = 'conversations_sse' | 'conversations_ws';

/** Counts one open stream of this kind until the returned function is called (once). */
export function countStream(api: ConversationApi, kind: ConversationStreamKind): () => void {
  const gauge = api.metrics?.activeStreams;
  if (!gauge) return () => {};
  gauge.inc({ api: kind });
  let done = false;
  return () => {
    if (done) return;
    done = true;
    gauge.dec({ api: kind });
  };
}

/** Conversations belong to user accounts; the master key has none. */
export function callerOf(request: FastifyRequest): Caller {
  const principal = principalOf(request);
  if (!principal.userId) {
    throw new AppError(
      'invalid_request',
      'the master key has no user account: conversations belong to users',
    );
  }
  return {
    userId: principal.userId,
    apiKeyId: principal.apiKeyId,
    role: principal.role,
    ...(principal.allowedModels ? { allowedModels: principal.allowedModels } : {}),
  };
}

export const errorResponses = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};
