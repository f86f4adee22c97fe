import { newId, nowIso } from '../../core/ids.js';
import type { Logger } from '../../core/logger.js';
import type { Db } from '../../db/database.js';
import { isUniqueViolation } from '../../db/database.js';
import type { Metrics } from '../../metrics/registry.js';
import type { RouteInfo } from '../../providers/router/types.js';
import type { Usage } from '../../providers/types.js';
import type { Tracing } from '../../tracing/tracing.js';
import type { PriceTable } from './prices.js';

export interface UsageEvent {
  requestId: string;
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

/**
 * The usage ledger: one row per request, idempotent on the request id (a replayed request is not billed
 * twice). Recording never fails the request it describes: a write error is logged.
 */
export class UsageRecorder {
  constructor(
    private readonly db: Db,
    private readonly prices: PriceTable,
    private readonly logger: Logger,
    private readonly metrics?: Metrics,
    private readonly tracing?: Tracing,
  ) {}

  #observe(event: UsageEvent, costUsd: number) {
    const m = this.metrics;
    if (!m) return;
    // Labels come from the resolved route (configured names), never from what the client typed.
    const provider = event.route?.provider ?? 'none';
    const model = event.route?.requestedModel ?? 'unrouted';
    m.llmRequests.inc({ provider, model, status: event.status, cached: event.cached ? 'true' : 'false' });
    // A cache hit called no upstream: it counts as a request, not as upstream latency, tokens or spend.
    if (!event.route || event.cached) return;
    if (event.latencyMs !== undefined)
      m.llmDuration.observe({ provider, model, status: event.status }, event.latencyMs / 1000);
    if (event.ttftMs !== undefined) m.llmTtft.observe({ provider, model }, event.ttftMs / 1000);
    m.tokens.inc({ provider, model, type: 'prompt' }, event.usage?.prompt_tokens ?? 0);
    m.tokens.inc({ provider, model, type: 'completion' }, event.usage?.completion_tokens ?? 0);
    m.cost.inc({ provider, model }, costUsd);
    if (event.route.attempts > 1) m.retries.inc({ provider }, event.route.attempts - 1);
    if (event.route.fallback) m.fallbacks.inc({ provider });
  }

  async record(event: UsageEvent): Promise<void> {
    const promptTokens = event.usage?.prompt_tokens ?? 0;
    const completionTokens = event.usage?.completion_tokens ?? 0;
    const pricedModel = event.route?.upstreamModel ?? event.model;
    const costUsd = event.cached ? 0 : this.prices.cost(pricedModel, promptTokens, completionTokens);
    this.#observe(event, costUsd);
    this.tracing?.recordLlmCall(event);
    try {
      await this.db
        .insertInto('usage_records')
        .values({
          id: newId('use'),
          request_id: event.requestId,
          user_id: event.userId,
          api_key_id: event.apiKeyId,
          model: event.route?.requestedModel ?? event.model,
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
        })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err)) return; // already recorded: idempotent on request id
      this.logger.error({ err, requestId: event.requestId }, 'failed to record usage');
    }
  }
}
