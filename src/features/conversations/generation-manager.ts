import { setTimeout as sleep } from 'node:timers/promises';
import type { ResponseCache, StreamRecorder } from '../../cache/response-cache.js';
import { AppError } from '../../core/errors.js';
import { nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import { storableText } from '../../core/text-normalize.js';
import { ProviderError } from '../../providers/errors.js';
import type { ChatGateway, RouteInfo } from '../../providers/router/types.js';
import { estimatePromptTokens, estimateUsage } from '../../providers/tokens.js';
import type { ChunkDelta, StreamEvent, ToolCall, Usage } from '../../providers/types.js';
import type { CredentialWatch } from '../auth/credential-watch.js';
import type { UsageRecorder } from '../usage/store.js';
import {
  type GenerationEvent,
  type GenerationEventType,
  type GenerationOutcome,
  type GenerationSpec,
  generationCaller,
  LiveGeneration,
} from './events.js';
import type { GenerationLeases } from './leases.js';
import type { RedisEventLog } from './redis-events.js';
import { type ConversationStore, type MessageRow, toPublicMessage } from './store.js';
import { deriveTitle } from './title.js';

export interface GenerationManagerOptions {
  store: ConversationStore;
  gateway: ChatGateway;
  usage: UsageRecorder;
  logger: Logger;
  redisLog?: RedisEventLog | undefined;
  /** The response cache, for replies whose assistant opted in (or that are deterministic). */
  responses?: ResponseCache | undefined;
  /** How often the text so far is written to the database while streaming. */
  flushIntervalMs?: number;
  /** A streaming row is touched at least this often, so a sweep can tell a live generation from an orphan. */
  heartbeatMs?: number;
  /** How long a finished generation's events stay in memory for reconnections. */
  retentionMs?: number;
  /** At most this many finished generations stay in memory (the oldest go first): a bound at any turn rate. */
  maxRetained?: number;
  /** A generation stops when the key it runs with is revoked or its user disabled (not when a token expires). */
  credentials?: CredentialWatch | undefined;
  /** With Redis: a lease per running generation, so another replica can finish it if this one dies. */
  leases?: GenerationLeases | undefined;
}

/** An abandoned generation's rows are not in the database: never committed, or not yet. */
class NotCommitted extends Error {}

type CancelReason = 'cancelled' | 'shutdown' | 'revoked';

class Cancelled extends Error {
  constructor(readonly reason: CancelReason) {
    super(
      reason === 'cancelled'
        ? 'generation cancelled'
        : reason === 'revoked'
          ? 'the credential was revoked'
          : 'the server is shutting down',
    );
  }
}

/** About five minutes of one-second retries of a finished generation's save. */
const FINAL_SAVE_ATTEMPTS = 300;
/** The error of a reply that never started because its rows' COMMIT failed (see abandon()). */
const ABANDONED = 'not generated: the database failed while the message was being saved; send it again';
/** How long a finished generation waits for its usage row (milliseconds when the database is healthy). */
const USAGE_WAIT_MS = 1_000;

/**
 * Runs generations independently of the HTTP connection that started them. Each has an id and a numbered
 * event log kept in memory (and mirrored to Redis when configured); its assistant message is written as it
 * grows (every flushIntervalMs) and finished as complete, partial (stopped after some text: provider
 * failure, cancel, shutdown) or error (failed before any text). Usage is recorded once per generation.
 */
export class GenerationManager {
  readonly #live = new Map<string, LiveGeneration>();
  readonly #running = new Set<LiveGeneration>();
  readonly #flushMs: number;
  readonly #heartbeatMs: number;
  readonly #retentionMs: number;
  readonly #maxRetained: number;
  /** Finished generations still in memory, oldest first, with when each is let go. */
  readonly #retained = new Map<LiveGeneration, number>();
  readonly #sweeper: NodeJS.Timeout;
  /** Pending retries of database writes (#retrySoon), cleared by close(). */
  readonly #timers = new Set<NodeJS.Timeout>();
  #closing = false;

  constructor(private readonly options: GenerationManagerOptions) {
    this.#flushMs = options.flushIntervalMs ?? 1_000;
    this.#heartbeatMs = options.heartbeatMs ?? 10_000;
    // Reconnections come within seconds; after this the database (or Redis) answers for a finished one.
    this.#retentionMs = options.retentionMs ?? 60_000;
    this.#maxRetained = options.maxRetained ?? 10_000;
    // One sweep for all instead of a timer per finished generation.
    this.#sweeper = setInterval(() => this.#letGo(), Math.min(this.#retentionMs, 5_000));
    this.#sweeper.unref();
    options.redisLog?.onCancelRequest((id) => this.cancel(id), options.leases?.owner);
  }

  get(id: string): LiveGeneration | undefined {
    return this.#live.get(id);
  }

  get runningCount(): number {
    return this.#running.size;
  }

  /** False once shutdown began: no new generation starts (its rows would outlive the process unfinished). */
  get accepting(): boolean {
    return !this.#closing;
  }

  /** Starts a generation whose rows are already committed; returns at once. */
  start(spec: GenerationSpec): LiveGeneration {
    const live = new LiveGeneration(spec);
    this.#live.set(spec.id, live);
    this.#running.add(live);
    if (spec.userMessage) this.#emit(live, 'message', { message: toPublicMessage(spec.userMessage) });
    this.#emit(live, 'start', {
      generation_id: spec.id,
      conversation_id: spec.conversationId,
      message_id: spec.message.id,
      parent_id: spec.message.parent_id,
      kind: spec.kind,
      model: spec.body.model,
      content: spec.prefix,
    });
    // Revoking the key it runs with (or disabling its user), on any replica, stops it.
    // Its ticket lets a replica that takes it over (this one died) record its usage and settle its budget.
    this.options.leases?.hold(spec.id, {
      apiKeyId: spec.apiKeyId ?? null,
      model: spec.body.model,
      promptTokens: estimatePromptTokens(spec.body.messages),
      admission: spec.admission?.ticket,
    });
    const unwatch = this.options.credentials?.watch(generationCaller(spec)!.principal, () =>
      this.cancel(spec.id, 'revoked'),
    );
    this.#run(live)
      .catch((err) =>
        this.options.logger.error({ err, generationId: spec.id }, 'generation failed unexpectedly'),
      )
      .finally(() => {
        this.options.leases?.release(spec.id);
        unwatch?.();
        this.#running.delete(live);
        live.retire();
        this.#retained.set(live, Date.now() + this.#retentionMs);
        this.#letGo();
      });
    return live;
  }

  /** Drops finished generations past their retention, and the oldest beyond maxRetained. */
  #letGo() {
    const now = Date.now();
    for (const [live, until] of this.#retained) {
      if (until > now && this.#retained.size <= this.#maxRetained) break;
      this.#retained.delete(live);
      if (this.#live.get(live.id) === live) this.#live.delete(live.id);
    }
  }

  /** Stops a running generation here; false when this process does not run it (or it already ended). */
  cancel(id: string, reason: CancelReason = 'cancelled'): boolean {
    const live = this.#live.get(id);
    if (!live || !this.#running.has(live) || live.controller.signal.aborted) return false;
    live.cancelled = true;
    live.controller.abort(new Cancelled(reason));
    return true;
  }

  /** Stops this process's running generations of a conversation (it is being deleted) and waits for them. */
  async cancelConversation(conversationId: string): Promise<void> {
    const running = [...this.#running].filter((g) => g.spec.conversationId === conversationId);
    for (const live of running) this.cancel(live.id);
    await Promise.allSettled(running.map((g) => g.finished));
  }

  /**
   * Shutdown: lets running generations finish until they are done, `drainOver` aborts or graceMs passes,
   * then stops the rest and saves them as partial.
   */
  async close(graceMs = 30_000, drainOver?: AbortSignal): Promise<void> {
    this.#closing = true;
    const running = [...this.#running];
    if (running.length) {
      const all = Promise.allSettled(running.map((g) => g.finished));
      let timer: NodeJS.Timeout | undefined;
      let onDrainOver: (() => void) | undefined;
      await Promise.race([
        all,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
          onDrainOver = resolve;
          if (drainOver?.aborted) resolve();
          drainOver?.addEventListener('abort', onDrainOver, { once: true });
        }),
      ]);
      clearTimeout(timer);
      if (onDrainOver) drainOver?.removeEventListener('abort', onDrainOver);
      for (const live of this.#running) this.cancel(live.id, 'shutdown');
      await Promise.allSettled([...this.#running].map((g) => g.finished));
    }
    clearInterval(this.#sweeper);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.options.redisLog?.close();
    this.options.leases?.close();
  }

  #emit(live: LiveGeneration, type: GenerationEventType, data: Record<string, unknown>): GenerationEvent {
    const event = live.append(type, data);
    void this.options.redisLog?.publish(live.id, event);
    return event;
  }

  async #run(live: LiveGeneration): Promise<void> {
    const { spec } = live;
    const { gateway, logger } = this.options;
    const signal = live.controller.signal;
    const startedAt = performance.now();
    let route: RouteInfo | undefined;
    let ttftMs: number | undefined;
    let usage: Usage | undefined;
    let newText = '';
    const toolCalls = new ToolCallCollector();
    let failure: unknown;
    let started = false;
    let cached = false;
    let recorder: StreamRecorder | undefined;

    const persister = new Persister(this.options.store, spec.message.id, this.#heartbeatMs, logger);
    const flusher = setInterval(() => persister.flush(live.text), this.#flushMs);
    flusher.unref();
    try {
      const caller = generationCaller(spec);
      // A plain reply may come from the cache (its user's own); regenerate and continue always ask the model.
      const responses = this.options.responses;
      const cacheKey =
        responses &&
        spec.kind === 'reply' &&
        responses.isCacheable(spec.body, { optIn: spec.cacheOptIn === true })
          ? responses.key(`user:${spec.userId}`, spec.body, undefined, {
              role: spec.role ?? 'user',
              apiKeyId: spec.apiKeyId,
              assistantId: spec.assistantId,
            })
          : undefined;
      const hit = cacheKey ? await responses!.replay(cacheKey).catch(() => undefined) : undefined;
      cached = Boolean(hit);
      // A reply from the cache calls no model: what was reserved for it is given back.
      if (hit) void spec.admission?.release().catch(() => {});
      const result = hit
        ? { route: hit.route!, ttftMs: 0, events: hit.events }
        : await abortable(
            gateway.stream({
              body: spec.body,
              requestId: spec.id,
              signal,
              caller,
              admission: spec.admission,
              context: { assistantId: spec.assistantId, conversationId: spec.conversationId },
            }),
            signal,
          );
      recorder = cacheKey && !hit ? responses!.recorder(cacheKey, { route: result.route }) : undefined;
      started = true;
      route = result.route;
      ttftMs = result.ttftMs;
      const iterator = result.events[Symbol.asyncIterator]();
      try {
        while (true) {
          const next: IteratorResult<StreamEvent> = await abortable(iterator.next(), signal);
          if (next.done) break;
          recorder?.record(next.value);
          const { chunk } = next.value;
          if (chunk.usage) usage = chunk.usage;
          const delta = chunk.choices[0]?.delta;
          if (delta?.tool_calls) toolCalls.add(delta.tool_calls);
          const content = delta?.content;
          if (content) {
            newText += content;
            live.text += content;
            this.#emit(live, 'delta', { content });
          }
        }
      } finally {
        // Closing the upstream stream must not hold up saving the message.
        void Promise.resolve(iterator.return?.()).catch(() => {});
      }
    } catch (err) {
      failure = err;
    } finally {
      clearInterval(flusher);
    }
    if (failure) recorder?.fail();
    else void recorder?.commit();

    const text = live.text;
    const status: GenerationOutcome['status'] = !failure
      ? 'complete'
      : live.cancelled || text.length > 0
        ? 'partial'
        : 'error';
    const error = failure ? describeFailure(failure, signal) : null;
    const expected = failure instanceof ProviderError || failure instanceof AppError;
    if (failure && !expected && !(signal.reason instanceof Cancelled)) {
      logger.error({ err: failure, generationId: spec.id }, 'generation stopped by an unexpected error');
    }
    // Upstreams are asked for usage; when one reports none, the tokens are counted here.
    const finalUsage = usage ?? (started ? await estimateUsage(spec.body.messages, newText) : undefined);
    const message: MessageRow = {
      ...spec.message,
      // An upstream's NUL or lone surrogate is stored alike on every database (core/text-normalize.ts).
      content: storableText(text),
      status,
      error: error?.message ?? null,
      prompt_tokens: finalUsage?.prompt_tokens ?? spec.message.prompt_tokens ?? null,
      completion_tokens: finalUsage
        ? spec.priorCompletionTokens + finalUsage.completion_tokens
        : (spec.message.completion_tokens ?? null),
      updated_at: nowIso(),
      tool_calls: toolCalls.json() ?? spec.message.tool_calls ?? null,
    };
    const lastEventId = live.events.length + 1;
    try {
      await persister.settle();
      await this.#persistFinal(live, message, error?.code ?? null, lastEventId);
    } catch (err) {
      // The database is down for a moment (a restart, a pause). The reply is delivered now and saved once the
      // database is back, so the row does not stay 'streaming' (refusing the conversation's next message)
      // until the orphan sweep, minutes later.
      logger.error({ err, generationId: spec.id }, 'could not save the finished generation; retrying');
      this.#retrySoon(
        async () => {
          await this.#persistFinal(live, message, error?.code ?? null, lastEventId);
          logger.info({ generationId: spec.id }, 'saved the finished generation');
        },
        (err) => logger.error({ err, generationId: spec.id }, 'gave up saving the finished generation'),
      );
    }

    // Usage rows are written in batches, one batch after another. While the database is down that queue
    // backs up with timeouts, and the reply (and the next message) must not wait for it: the wait is bounded.
    const recorded = this.options.usage.record(
      {
        requestId: spec.id,
        protocol: 'conversations',
        userId: spec.userId,
        apiKeyId: spec.apiKeyId,
        model: spec.body.model,
        route,
        usage: finalUsage,
        latencyMs: performance.now() - startedAt,
        ttftMs,
        status: status === 'complete' ? 'ok' : live.cancelled ? 'cancelled' : status,
        cached,
      },
      'soon',
    );
    await Promise.race([recorded, sleep(USAGE_WAIT_MS, undefined, { ref: false })]);

    const publicMessage = toPublicMessage(message);
    const usageView = finalUsage ?? null;
    if (status === 'complete') this.#emit(live, 'done', { message: publicMessage, usage: usageView });
    else this.#emit(live, 'error', { message: publicMessage, error, usage: usageView });
    live.finish({
      status,
      message,
      usage: usageView,
      error,
      providerErrorBeforeStart: !started && failure instanceof ProviderError ? failure : null,
    });
  }

  /**
   * A generation that will never run because its rows failed to commit, or maybe did not: a COMMIT cut off
   * on its way (the database paused or restarting) may still be applied. Once the database answers, a reply
   * so left 'streaming' is ended as an error; otherwise the conversation would refuse its next message
   * until the orphan sweep, minutes later. Rows not there are looked for again for as long: a COMMIT sent on a
   * connection whose server process is stopped is applied when it resumes, however late that is.
   */
  abandon(generationId: string): void {
    this.#retrySoon(
      async () => {
        if (!(await this.#endAbandoned(generationId))) throw new NotCommitted();
      },
      (err) => {
        if (err instanceof NotCommitted) return;
        this.options.logger.error({ err, generationId }, 'gave up ending the abandoned generation');
      },
    );
  }

  /** Retries a database write after 0.25 s, 0.5 s, … then every second for about five minutes (a shutdown stops it). */
  #retrySoon(write: () => Promise<void>, giveUp: (err: unknown) => void, attempt = 1) {
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        write().catch((err) => {
          if (attempt < FINAL_SAVE_ATTEMPTS) this.#retrySoon(write, giveUp, attempt + 1);
          else giveUp(err);
        });
      },
      Math.min(250 * attempt, 1_000),
    );
    timer.unref();
    this.#timers.add(timer);
  }

  /** Ends the generation's rows as abandoned; false when they are not (yet) committed. */
  #endAbandoned(generationId: string): Promise<boolean> {
    const now = nowIso();
    return this.options.store.db.transaction().execute(async (trx) => {
      const generation = await trx
        .selectFrom('generations')
        .select(['message_id', 'status'])
        .where('id', '=', generationId)
        .executeTakeFirst();
      if (!generation) return false;
      if (generation.status !== 'running') return true;
      await trx
        .updateTable('messages')
        .set({ status: 'error', error: ABANDONED, updated_at: now })
        .where('id', '=', generation.message_id)
        .where('status', '=', 'streaming')
        .execute();
      await trx
        .updateTable('generations')
        .set({ status: 'error', error: 'abandoned', updated_at: now, finished_at: now })
        .where('id', '=', generationId)
        .execute();
      return true;
    });
  }

  async #persistFinal(
    live: LiveGeneration,
    message: MessageRow,
    errorCode: string | null,
    lastEventId: number,
  ) {
    const { spec } = live;
    const store = this.options.store;
    await store.db.transaction().execute(async (trx) => {
      // Only while it still runs: a replica that took it over (this one's lease expired: paused or cut off
      // from Redis for seconds) already saved it as interrupted, and readers were told so.
      const generation = await trx
        .selectFrom('generations')
        .select('status')
        .where('id', '=', spec.id)
        .executeTakeFirst();
      if (generation && generation.status !== 'running') return;
      await trx
        .updateTable('messages')
        .set({
          content: message.content,
          status: message.status,
          error: message.error,
          prompt_tokens: message.prompt_tokens,
          completion_tokens: message.completion_tokens,
          updated_at: message.updated_at,
          tool_calls: message.tool_calls ?? null,
        })
        .where('id', '=', message.id)
        .execute();
      await trx
        .updateTable('generations')
        .set({
          status: message.status === 'streaming' ? 'partial' : message.status,
          error: errorCode,
          last_event_id: lastEventId,
          updated_at: message.updated_at,
          finished_at: message.updated_at,
        })
        .where('id', '=', spec.id)
        .execute();
      await trx
        .updateTable('conversations')
        .set({ updated_at: message.updated_at })
        .where('id', '=', spec.conversationId)
        .execute();
      if (spec.titleSource && message.status !== 'error') {
        const title = deriveTitle(spec.titleSource);
        if (title) await store.setTitleIfUnset(spec.conversationId, title, trx);
      }
    });
  }
}

const MAX_TOOL_CALLS = 128;

/**
 * A reply's tool calls, assembled from stream deltas: each call's id, name and arguments arrive in pieces,
 * keyed by `index` (OpenAI's streaming shape).
 */
class ToolCallCollector {
  readonly #calls: ToolCall[] = [];

  add(deltas: NonNullable<ChunkDelta['tool_calls']>) {
    for (const delta of deltas) {
      // An index is a small position; anything else would make a sparse array of any length.
      if (!Number.isInteger(delta.index) || delta.index < 0 || delta.index >= MAX_TOOL_CALLS) continue;
      let call = this.#calls[delta.index];
      if (!call) {
        call = { id: '', type: 'function', function: { name: '', arguments: '' } };
        this.#calls[delta.index] = call;
      }
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.function.name += delta.function.name;
      if (delta.function?.arguments) call.function.arguments += delta.function.arguments;
    }
  }

  /** JSON of the calls made, undefined when there were none. */
  json(): string | undefined {
    const calls = this.#calls.filter(Boolean);
    return calls.length > 0 ? JSON.stringify(calls) : undefined;
  }
}

/** Writes the text so far, one write at a time, skipping unchanged text between heartbeats. */
class Persister {
  #chain: Promise<void> = Promise.resolve();
  #written = '';
  #writtenAt = Date.now();

  constructor(
    private readonly store: ConversationStore,
    private readonly messageId: string,
    private readonly heartbeatMs: number,
    private readonly logger: Logger,
  ) {}

  flush(text: string) {
    if (text === this.#written && Date.now() - this.#writtenAt < this.heartbeatMs) return;
    this.#written = text;
    this.#writtenAt = Date.now();
    this.#chain = this.#chain.then(async () => {
      try {
        await this.store.db
          .updateTable('messages')
          .set({ content: storableText(text), updated_at: nowIso() })
          .where('id', '=', this.messageId)
          .where('status', '=', 'streaming')
          .execute();
      } catch (err) {
        this.logger.warn({ err, messageId: this.messageId }, 'could not save streamed text');
      }
    });
  }

  settle(): Promise<void> {
    return this.#chain;
  }
}

/** Rejects as soon as the signal aborts, even when the wrapped call ignores it. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function describeFailure(failure: unknown, signal: AbortSignal): { code: string; message: string } {
  const reason = signal.reason;
  if (reason instanceof Cancelled) {
    if (reason.reason === 'revoked')
      return {
        code: 'credentials_revoked',
        message: 'stopped: the API key it ran with was revoked, or its user disabled',
      };
    return reason.reason === 'cancelled'
      ? { code: 'cancelled', message: 'cancelled by the user' }
      : { code: 'shutdown', message: 'stopped because the server was shutting down' };
  }
  if (failure instanceof ProviderError) return { code: failure.details.code, message: failure.message };
  // Refusals of our own (rate limits, budgets, limits that cannot be checked while Redis is away) say why.
  if (failure instanceof AppError) return { code: failure.code, message: failure.message };
  return { code: 'internal_error', message: 'the reply failed because of an internal error' };
}
