import type { FastifyRequest } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { principalOf } from '../../plugins/auth.js';
import type { AssistantStore } from '../assistants/store.js';
import type { GenerationFeed } from './feed.js';
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
  return { userId: principal.userId, apiKeyId: principal.apiKeyId };
}

export const errorResponses = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  403: Type.Ref('Error'),
  404: Type.Ref('Error'),
};
