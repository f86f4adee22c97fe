import type { CompiledQuery, Insertable } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import { executeRetryingTransient, isRowError } from '../../db/batch-errors.js';
import type { Db } from '../../db/database.js';
import { onConflictIgnore } from '../../db/portable.js';
import type { UsageRecordsTable } from '../../db/schema.js';
import { CounterCells, HistogramCells } from '../../metrics/label-cells.js';
import type { Metrics } from '../../metrics/registry.js';
import type { RouteInfo } from '../../providers/router/types.js';
import type { Usage } from '../../providers/types.js';
import type { Tracing } from '../../tracing/tracing.js';
import type { PriceTable } from './prices.js';

/** The client protocol a request came in by (issue 20); a ledger column and a metrics label. */
export type UsageProtocol =
  | 'chat_completions'
  | 'messages'
  | 'responses'
  | 'embeddings'
  | 'completions'
  | 'conversations'
  /** A guardrail's moderation check calling a chat model on behalf of the request's caller. */
  | 'guardrail';

export interface UsageEvent {
  requestId: string;
  /** Absent: `chat_completions`, what every caller recorded before protocols were told apart. */
  protocol?: UsageProtocol | undefined;
  userId: string | null;
  apiKeyId: string | null;
  /** The model the client asked for when no route was found. */
  model: string;
  route?: RouteInfo | undefined;
  usage?: Usage | undefined;
  latencyMs?: number | undefined;
  ttftMs?: number | undefined;
  /** ok, error, cancelled, partial… */
  status: string;
  cached?: boolean;
}

/** The ledger's and the metrics' model for a request no route answered (see #ledgerModel). */
export const UNROUTED = 'unrouted';

const noop = () => {};

/** Rows written per statement at most; more waiting rows go in the next statement right away. */
const MAX_BATCH = 256;
/**
 * How long a row may wait for others to share its write. A SQLite commit costs ~90 µs before its rows
 * (~10 µs each): at 1,000 requests/s a 5 ms window made batches of 5 at ~50 µs a row, this one ~15 µs.
 * Nothing reads the ledger this fast: the usage API flushes first, and a caller that waits for its row
 * asks for it `soon`.
 */
const FLUSH_DELAY_MS = 50;

/** A ledger row as written: every column bound, the protocol included (see #insert). */
type LedgerRow = Insertable<UsageRecordsTable> & { protocol: string };

interface Pending {
  row: LedgerRow;
  written: () => void;
}

/**
 * The usage ledger: one row per request, idempotent on the request id (a replayed request is not billed
 * twice). Recording never fails the request it describes: a write error is logged.
 *
 * Rows are written in batches: those recorded within a few milliseconds of each other share one multi-row
 * INSERT (one statement and one commit instead of one per request). `record()` resolves once its row is
 * written; `close()` writes whatever is still waiting, so a graceful stop loses nothing.
 */
export class UsageRecorder {
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #soon: NodeJS.Immediate | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  /** Calls whose row follows their answer (streams), and who waits for the last of them (close). */
  #inFlight = 0;
  #idle: (() => void) | undefined;
  /** The SQL of a batch of n rows, compiled once per n (the statement is then prepared once too). */
  readonly #batchSql = new Map<number, CompiledQuery>();
  /** The request metrics' series, found by label values (see label-cells.ts). */
  readonly #cells;

  constructor(
    private readonly db: Db,
    private readonly prices: PriceTable,
    private readonly logger: Logger,
    private readonly metrics?: Metrics,
    private readonly tracing?: Tracing,
    /** How long a batch waits for company (tests lengthen it to tell batched rows from `soon` ones). */
    private readonly flushDelayMs = FLUSH_DELAY_MS,
  ) {
    this.#cells = metrics && {
      requests: new CounterCells(metrics.llmRequests, ['provider', 'model', 'status', 'cached', 'protocol']),
      duration: new HistogramCells(metrics.llmDuration, ['provider', 'model', 'status', 'protocol']),
      ttft: new HistogramCells(metrics.llmTtft, ['provider', 'model']),
      tokens: new CounterCells(metrics.tokens, ['provider', 'model', 'type']),
      cost: new CounterCells(metrics.cost, ['provider', 'model']),
    };
  }

  /**
   * Whether a model name may be written to the ledger as sent (a configured alias or a listed model). A name
   * that never reached a model is recorded as `unrouted`: the ledger and its CSV exports must not hold any
   * string a client sends (a model named `=cmd|…` was a spreadsheet formula in an admin's export, issue 19).
   */
  isKnownModel: (model: string) => boolean = () => false;

  #ledgerModel(event: UsageEvent): string {
    if (event.route) return event.route.requestedModel;
    return this.isKnownModel(event.model) ? event.model : UNROUTED;
  }

  #observe(event: UsageEvent, costUsd: number) {
    const m = this.metrics;
    const cells = this.#cells;
    if (!m || !cells) return;
    // Labels come from the resolved route (configured names), never from what the client typed.
    const provider = event.route?.provider ?? 'none';
    const model = event.route?.requestedModel ?? UNROUTED;
    const protocol = event.protocol ?? 'chat_completions';
    cells.requests.inc(1, provider, model, event.status, event.cached ? 'true' : 'false', protocol);
    // A cache hit called no upstream: it counts as a request, not as upstream latency, tokens or spend.
    if (!event.route || event.cached) return;
    if (event.latencyMs !== undefined)
      cells.duration.observe(event.latencyMs / 1000, provider, model, event.status, protocol);
    if (event.ttftMs !== undefined) cells.ttft.observe(event.ttftMs / 1000, provider, model);
    cells.tokens.inc(event.usage?.prompt_tokens ?? 0, provider, model, 'prompt');
    cells.tokens.inc(event.usage?.completion_tokens ?? 0, provider, model, 'completion');
    cells.cost.inc(costUsd, provider, model);
    if (event.route.attempts > 1) m.retries.inc({ provider }, event.route.attempts - 1);
    if (event.route.fallback) m.fallbacks.inc({ provider });
  }

  /**
   * Queues the request's row (synchronously: a caller that does not wait still has it counted). `soon`
   * writes it once the current tick's rows are queued, for a caller that waits for it.
   */
  record(event: UsageEvent, when: 'batched' | 'soon' = 'batched'): Promise<void> {
    return new Promise<void>((written) => this.#queue(event, when, written));
  }

  /** As record(), for a caller that does not wait for its row (every /v1 request): no promise is made. */
  enqueue(event: UsageEvent): void {
    this.#queue(event, 'batched', noop);
  }

  #queue(event: UsageEvent, when: 'batched' | 'soon', written: () => void): void {
    const promptTokens = event.usage?.prompt_tokens ?? 0;
    const completionTokens = event.usage?.completion_tokens ?? 0;
    const pricedModel = event.route?.upstreamModel ?? event.model;
    const costUsd = event.cached ? 0 : this.prices.cost(pricedModel, promptTokens, completionTokens);
    this.#observe(event, costUsd);
    this.tracing?.recordLlmCall(event);
    const row: LedgerRow = {
      id: newId('use'),
      request_id: event.requestId,
      // Never undefined: every row must bind every column (see #insert).
      user_id: event.userId ?? null,
      api_key_id: event.apiKeyId ?? null,
      model: this.#ledgerModel(event),
      provider: event.route?.provider ?? null,
      deployment: event.route?.deployment ?? null,
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      cost_usd: costUsd,
      latency_ms: event.latencyMs === undefined ? null : Math.round(event.latencyMs),
      ttft_ms: event.ttftMs === undefined ? null : Math.round(event.ttftMs),
      status: event.status,
      cached: event.cached ? 1 : 0,
      retries: Math.max(0, (event.route?.attempts ?? 1) - 1),
      fallback: event.route?.fallback ? 1 : 0,
      created_at: nowIso(),
      protocol: event.protocol ?? 'chat_completions',
    };
    this.#pending.push({ row, written });
    if (this.#closed || this.#pending.length >= MAX_BATCH) void this.flush();
    else if (when === 'soon') this.#soon ??= setImmediate(() => void this.flush());
    else this.#timer ??= setTimeout(() => void this.flush(), this.flushDelayMs);
  }

  /** Writes every row queued so far; resolves once they (and earlier batches) are in the database. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    clearImmediate(this.#soon);
    this.#timer = undefined;
    this.#soon = undefined;
    const batch = this.#pending;
    if (batch.length === 0) return this.#writing;
    this.#pending = [];
    // One write at a time keeps the batches in order and the single SQLite connection free for requests.
    this.#writing = this.#writing.then(() => this.#write(batch));
    return this.#writing;
  }

  /**
   * Counts a call whose row is recorded only after its answer has gone out (a stream: its row follows the
   * response's end, the stored response and a token estimate). close() waits for it: the server closes once
   * every connection has ended, which for such a call is before its row is queued, and the database closes
   * right after — a stream ending during a drain lost its row. The returned function is called once the row
   * is queued (or the call ended without one).
   */
  hold(): () => void {
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.#inFlight === 0) this.#idle?.();
    };
  }

  /**
   * Waits (at most `waitMs`) for the calls held to queue their rows, then writes what is queued; later rows
   * are written one batch at a time without waiting.
   */
  async close(waitMs = 0): Promise<void> {
    if (this.#inFlight > 0 && waitMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((idle) => {
        this.#idle = idle;
        timer = setTimeout(() => {
          this.logger.warn({ calls: this.#inFlight }, 'usage rows still pending at shutdown: not waiting');
          idle();
        }, waitMs);
      });
      clearTimeout(timer);
      this.#idle = undefined;
    }
    this.#closed = true;
    await this.flush();
  }

  async #write(batch: Pending[]) {
    for (let i = 0; i < batch.length; i += MAX_BATCH) {
      const chunk = batch.slice(i, i + MAX_BATCH);
      try {
        await executeRetryingTransient(this.db, this.#insert(chunk.map((p) => p.row)), (err) =>
          this.logger.warn(
            { err, rows: chunk.length },
            'usage batch rolled back by the database: retrying it',
          ),
        );
      } catch (err) {
        if (chunk.length > 1 && isRowError(err)) {
          // One bad row must not cost the others theirs: write them one by one, logging the failures.
          for (const { row } of chunk) {
            await this.db.executeQuery(this.#insert([row])).catch((rowErr: unknown) => {
              this.logger.error({ err: rowErr, requestId: row.request_id }, 'failed to record usage');
            });
          }
        } else {
          // The database itself failed (down, full, timed out): retrying row by row would only multiply
          // the wait while the queue behind it grows.
          this.logger.error(
            { err, requestIds: chunk.map((p) => p.row.request_id) },
            `failed to record usage for ${chunk.length} request(s)`,
          );
        }
      }
      for (const p of chunk) p.written();
    }
  }

  /** INSERT … ON CONFLICT (request_id) DO NOTHING for these rows: a replayed request id is recorded once. */
  #insert(rows: LedgerRow[]): CompiledQuery {
    let compiled = this.#batchSql.get(rows.length);
    if (!compiled) {
      compiled = onConflictIgnore(
        this.db,
        this.db.insertInto('usage_records').values(rows),
        'request_id',
      ).compile();
      this.#batchSql.set(rows.length, compiled);
    }
    // Kysely binds the values row by row, column by column in the rows' key order (the literal above).
    // Key by key into an array of the statement's size: Object.values made an array per row to copy from.
    const parameters: unknown[] = new Array(compiled.parameters.length);
    let bound = 0;
    for (const row of rows) for (const key in row) parameters[bound++] = row[key as keyof LedgerRow];
    if (bound !== compiled.parameters.length)
      throw new Error(`usage batch binds ${bound} values, its statement takes ${compiled.parameters.length}`);
    return { ...compiled, parameters };
  }
}
