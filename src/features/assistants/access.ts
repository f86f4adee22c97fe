import { AppError, notFound } from '../../core/errors.js';
import type { Principal } from '../auth/principal.js';
import type { AssistantRow } from './store.js';

/**
 * Who sees an assistant: everyone sees shared ones, a user their own private ones, admins all. Someone
 * else's private assistant is "not found", exactly like one that does not exist.
 */
export function assertVisible(principal: Principal, row: AssistantRow | undefined): AssistantRow {
  if (!row) throw notFound('assistant');
  if (row.owner_id === null || row.owner_id === principal.userId || principal.role === 'admin') return row;
  throw notFound('assistant');
}

/** Shared assistants are managed by admins; a private one by its owner (or an admin). */
export function assertManageable(principal: Principal, row: AssistantRow | undefined): AssistantRow {
  const visible = assertVisible(principal, row);
  if (principal.role === 'admin' || (visible.owner_id !== null && visible.owner_id === principal.userId)) {
    return visible;
  }
  throw new AppError('forbidden', 'shared assistants are managed by admins');
}

/** What a conversation may use: shared assistants and the caller's own, never another user's. */
export function assertUsable(userId: string, row: AssistantRow | undefined): AssistantRow {
  if (!row || (row.owner_id !== null && row.owner_id !== userId)) throw notFound('assistant');
  return row;
}
