import { nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { ChatGateway } from '../../providers/router/types.js';
import { estimateUsage } from '../../providers/tokens.js';
import type { UsageRecorder } from '../usage/store.js';
import type { GenerationEvent } from './events.js';
import type { GenerationLeases } from './leases.js';
import type { RedisEventLog } from './redis-events.js';
import { type ConversationStore, toPublicMessage } from './store.js';
import { INTERRUPTED } from './sweep.js';

export interface TakeoverDeps {
  store: ConversationStore;
  redisLog: RedisEventLog;
  leases: GenerationLeases;
  logger: Logger;
  /** True when this process runs the generation (it is not abandoned, whatever Redis says). */
  runsHere: (generationId: string) => boolean;
  /** The ledger: a generation finished here gets the usage row its dead replica never wrote. */
  usage?: UsageRecorder | undefined;
  /** Settles the dead replica's budget reservation (from the generation's ticket). */
  gateway?: Pick<ChatGateway, 'settleAbandoned'> | undefined;
}

export interface FinishOptions {
  /**
   * `cancelled`: a user cancelled it and its replica is known gone (nobody listens on its cancel channel):
   * finished at once, without waiting for its lease to expire. Default `interrupted`: its lease expired.
   */
  reason?: 'interrupted' | 'cancelled';
}

const CANCELLED = 'cancelled by the user';

/**
 * Finishes a generation whose replica died (its lease expired): the reply is saved with the text its event
 * log in Redis holds (partial; error when nothing was streamed), the generation ends as `interrupted`, and
 * the final event is appended to the log so every reader on every replica sees the end. Any replica may
 * call it; the conditional updates make one of them win. Returns false when the generation is not
 * abandoned (still running somewhere, just started, already ended, or Redis cannot tell).
 */
export async function finishAbandoned(
  deps: TakeoverDeps,
  generationId: string,
  options: FinishOptions = {},
): Promise<boolean> {
  const cancelled = options.reason === 'cancelled';
  if (deps.runsHere(generationId)) return false;
  const db = deps.store.db;
  const row = await db
    .selectFrom('generations')
    .select(['message_id', 'status', 'created_at', 'user_id', 'model'])
    .where('id', '=', generationId)
    .executeTakeFirst();
  if (row?.status !== 'running') return false;
  if (!cancelled) {
    // A generation younger than a lease may not have written its lease yet.
    if (Date.parse(row.created_at) > Date.now() - deps.leases.ttlMs) return false;
    try {
      if (!(await deps.leases.isAbandoned(generationId))) return false;
    } catch {
      return false;
    }
  }
  const events = await deps.redisLog.readAll(generationId);
  const start = events.find((e) => e.type === 'start');
  let text = typeof start?.data.content === 'string' ? start.data.content : '';
  let generated = '';
  for (const event of events) if (event.type === 'delta') generated += String(event.data.content ?? '');
  text += generated;
  const message = await deps.store.db
    .selectFrom('messages')
    .selectAll()
    .where('id', '=', row.message_id)
    .executeTakeFirst();
  if (!message) return false;
  // The log can be shorter than what the database holds (Redis lost it): keep the longer text.
  if (message.content.length > text.length) text = message.content;
  const lastEventId = (events.at(-1)?.id ?? 0) + 1;
  // A cancel keeps what there is (partial, as a cancel on the replica running it does).
  const status = cancelled || text.length > 0 ? 'partial' : 'error';
  const [code, reason] = cancelled ? ['cancelled', CANCELLED] : ['interrupted', INTERRUPTED];
  const now = nowIso();
  const won = await db.transaction().execute(async (trx) => {
    const ended = await trx
      .updateTable('generations')
      .set({ status, error: code, last_event_id: lastEventId, updated_at: now, finished_at: now })
      .where('id', '=', generationId)
      .where('status', '=', 'running')
      .executeTakeFirst();
    if (Number(ended.numUpdatedRows) !== 1) return false;
    await trx
      .updateTable('messages')
      .set({ content: text, status, error: reason, updated_at: now })
      .where('id', '=', row.message_id)
      .where('status', '=', 'streaming')
      .execute();
    return true;
  });
  if (!won) return false;
  // Only the winner gets here: the usage row and the budget's settlement happen once.
  await recordUsage(deps, generationId, row, generated, cancelled ? 'cancelled' : status).catch((err) =>
    deps.logger.warn({ err, generationId }, 'could not record the usage of a generation taken over'),
  );
  const saved = { ...message, content: text, status, error: reason, updated_at: now } as const;
  const final: GenerationEvent = {
    id: lastEventId,
    type: 'error',
    data: {
      message: toPublicMessage(saved),
      error: { code, message: reason },
      usage: null,
    },
  };
  await deps.redisLog.publish(generationId, final);
  deps.logger.warn({ generationId, reason: code }, 'finished a generation whose replica stopped');
  return true;
}

/**
 * The usage row the dead replica never wrote, with tokens estimated from its ticket (the prompt's size) and
 * the text it streamed, and the settlement of its budget reservation to the same usage.
 */
async function recordUsage(
  deps: TakeoverDeps,
  generationId: string,
  row: { user_id: string; model: string; created_at: string },
  generated: string,
  status: string,
): Promise<void> {
  const ticket = await deps.leases.takeTicket(generationId).catch(() => null);
  const estimated = await estimateUsage([], generated);
  const promptTokens = ticket?.promptTokens ?? 0;
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: estimated.completion_tokens,
    total_tokens: promptTokens + estimated.completion_tokens,
  };
  const model = ticket?.model ?? row.model;
  if (ticket?.admission !== undefined) await deps.gateway?.settleAbandoned?.(ticket.admission, usage, model);
  await deps.usage?.record(
    {
      requestId: generationId,
      protocol: 'conversations',
      userId: row.user_id,
      apiKeyId: ticket?.apiKeyId ?? null,
      model,
      usage,
      latencyMs: Date.now() - Date.parse(row.created_at),
      status,
    },
    'soon',
  );
}

/**
 * A cancel of a generation this process does not run: asks the replica holding its lease, on that replica's
 * own channel. When nobody hears it, that replica is gone (its lease has not expired yet): the generation is
 * finished here at once, as cancelled. `asked`: its replica stops it; `unknown`: no lease (or no Redis).
 */
export async function cancelElsewhere(
  deps: TakeoverDeps,
  generationId: string,
): Promise<'finished' | 'asked' | 'unknown'> {
  let owner: string | null;
  try {
    owner = await deps.leases.ownerOf(generationId);
    if (!owner || owner === deps.leases.owner) return 'unknown';
    if ((await deps.redisLog.requestCancelOf(owner, generationId)) > 0) return 'asked';
  } catch {
    return 'unknown';
  }
  await finishAbandoned(deps, generationId, { reason: 'cancelled' });
  return 'finished';
}

/** Finishes every abandoned generation (a few at a time): what a replica does every few seconds. */
export async function finishAllAbandoned(deps: TakeoverDeps, limit = 100): Promise<number> {
  const cutoff = new Date(Date.now() - deps.leases.ttlMs).toISOString();
  const running = await deps.store.db
    .selectFrom('generations')
    .select('id')
    .where('status', '=', 'running')
    .where('created_at', '<=', cutoff)
    .limit(limit)
    .execute();
  // One round trip asks Redis about every lease; only generations without one are looked at further.
  const candidates = running.map((r) => r.id).filter((id) => !deps.runsHere(id));
  let finished = 0;
  for (const id of await deps.leases.abandonedOf(candidates)) if (await finishAbandoned(deps, id)) finished++;
  return finished;
}
