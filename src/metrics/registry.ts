import client, { type Registry } from 'prom-client';
import { droppedLogLines } from '../core/logger.js';
import { tokenCounts } from '../providers/tokens.js';
import { VERSION } from '../version.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const TTFT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60];
const FAST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/**
 * Every Prometheus metric Colloquy exports, on its own registry (tests build as many apps as they like).
 * Labels stay bounded: route templates, providers, configured model names, error codes — never user ids,
 * raw paths or free text. Every series carries `track` (stable/canary) for canary analysis.
 */
export function createMetrics(options: { track: 'stable' | 'canary' }) {
  const registry: Registry = new client.Registry();
  registry.setDefaultLabels({ track: options.track });
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });

  const metrics = {
    registry,
    httpDuration: new client.Histogram({
      name: 'colloquy_http_request_duration_seconds',
      help: 'HTTP request duration by route template, method and status code',
      labelNames: ['route', 'method', 'status_code'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    llmDuration: new client.Histogram({
      name: 'colloquy_llm_request_duration_seconds',
      help: 'Upstream LLM call duration, first attempt to last byte, by client protocol',
      labelNames: ['provider', 'model', 'status', 'protocol'] as const,
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    llmTtft: new client.Histogram({
      name: 'colloquy_llm_time_to_first_token_seconds',
      help: 'Time from the request to the first streamed chunk',
      labelNames: ['provider', 'model'] as const,
      buckets: TTFT_BUCKETS,
      registers: [registry],
    }),
    tokens: new client.Counter({
      name: 'colloquy_llm_tokens_total',
      help: 'Tokens processed, by direction (prompt or completion)',
      labelNames: ['provider', 'model', 'type'] as const,
      registers: [registry],
    }),
    cost: new client.Counter({
      name: 'colloquy_llm_cost_usd_total',
      help: 'Spend in US dollars at the configured prices',
      labelNames: ['provider', 'model'] as const,
      registers: [registry],
    }),
    llmRequests: new client.Counter({
      name: 'colloquy_llm_requests_total',
      help: 'LLM requests by outcome (ok, error, partial, cancelled) and whether served from cache',
      labelNames: ['provider', 'model', 'status', 'cached', 'protocol'] as const,
      registers: [registry],
    }),
    droppedLogLines: new client.Counter({
      name: 'colloquy_log_lines_dropped_total',
      help: 'Log lines dropped because stdout did not take them fast enough (16 MiB were waiting)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(droppedLogLines());
      },
    }),
    tokenCounts: new client.Counter({
      name: 'colloquy_token_counts_total',
      help: 'Texts whose tokens Colloquy counted (usage without upstream figures, context trimming), by source: cached, counted by the tokenizer, or approximated because the tokenizer worker failed',
      labelNames: ['source'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [source, count] of Object.entries(tokenCounts())) this.inc({ source }, count);
      },
    }),
    upstreamErrors: new client.Counter({
      name: 'colloquy_upstream_errors_total',
      help: 'Failed upstream attempts by provider and error code',
      labelNames: ['provider', 'code'] as const,
      registers: [registry],
    }),
    retries: new client.Counter({
      name: 'colloquy_upstream_retries_total',
      help: 'Upstream attempts beyond the first',
      labelNames: ['provider'] as const,
      registers: [registry],
    }),
    fallbacks: new client.Counter({
      name: 'colloquy_upstream_fallbacks_total',
      help: 'Requests served by a deployment other than the first choice',
      labelNames: ['provider'] as const,
      registers: [registry],
    }),
    circuitState: new client.Gauge({
      name: 'colloquy_circuit_breaker_state',
      help: 'Circuit breaker state per configured deployment: 0 closed, 1 half-open, 2 open',
      labelNames: ['deployment'] as const,
      // Each worker has its own breakers: across workers (WORKERS > 1) the worst one.
      aggregator: 'max',
      registers: [registry],
    }),
    cacheRequests: new client.Counter({
      name: 'colloquy_cache_requests_total',
      help: 'Cache lookups by namespace and result (hit or miss)',
      labelNames: ['namespace', 'result'] as const,
      registers: [registry],
    }),
    cacheSavedUsd: new client.Counter({
      name: 'colloquy_cache_saved_usd_total',
      help: 'Spend avoided by answering from the response cache',
      registers: [registry],
    }),
    limitRejections: new client.Counter({
      name: 'colloquy_limit_rejections_total',
      help: 'Requests refused by rate limits or budgets',
      labelNames: ['limit', 'scope'] as const,
      registers: [registry],
    }),
    guardrailVerdicts: new client.Counter({
      name: 'colloquy_guardrail_verdicts_total',
      help: 'Guardrail verdicts (issue 22): a check found something, or failed (action error)',
      labelNames: ['guardrail', 'stage', 'action'] as const,
      registers: [registry],
    }),
    httpInFlight: new client.Gauge({
      name: 'colloquy_http_requests_in_flight',
      help: 'Requests being served right now, open streams and WebSockets included (health and metrics not)',
      registers: [registry],
    }),
    activeStreams: new client.Gauge({
      name: 'colloquy_active_streams',
      help: 'Streams open to clients right now, by api: v1, conversations_sse, conversations_ws',
      labelNames: ['api'] as const,
      registers: [registry],
    }),
    dbQueryDuration: new client.Histogram({
      name: 'colloquy_db_query_duration_seconds',
      help: 'Database query duration',
      labelNames: ['dialect'] as const,
      buckets: FAST_BUCKETS,
      registers: [registry],
    }),
    dbPool: new client.Gauge({
      name: 'colloquy_db_pool_connections',
      help: 'PostgreSQL pool connections by state (total, idle, waiting)',
      labelNames: ['state'] as const,
      registers: [registry],
    }),
    redisUp: new client.Gauge({
      name: 'colloquy_redis_up',
      help: '1 when Redis answers, 0 when it does not, absent without REDIS_URL',
      // Across workers: 0 if any of them cannot reach it.
      aggregator: 'min',
      registers: [registry],
    }),
    retentionDeleted: new client.Counter({
      name: 'colloquy_retention_deleted_total',
      help: 'Rows removed by the retention jobs, by kind (usage, conversations)',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    mailOutbox: new client.Gauge({
      name: 'colloquy_mail_outbox_mails',
      help: 'Mails in the outbox by status: pending (waiting or being sent) and failed (given up)',
      labelNames: ['status'] as const,
      // Every worker reads the same table: one value, not N summed.
      aggregator: 'max',
      registers: [registry],
    }),
    mailSent: new client.Counter({
      name: 'colloquy_mail_send_attempts_total',
      help: 'Mail send attempts by kind and result (sent, retry, failed: given up)',
      labelNames: ['kind', 'result'] as const,
      registers: [registry],
    }),
    buildInfo: new client.Gauge({
      name: 'colloquy_build_info',
      help: 'Always 1; the labels carry the running version',
      labelNames: ['version', 'node_version'] as const,
      // Across workers: one series, not one per worker summed to N.
      aggregator: 'first',
      registers: [registry],
    }),
  };
  metrics.buildInfo.set({ version: VERSION, node_version: process.version }, 1);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
