import { Ajv, type ValidateFunction } from 'ajv';
import type { Logger } from '../../core/logger.js';
import type {
  CompletionResult,
  GatewayRequest,
  RouteInfo,
  StreamResult,
} from '../../providers/router/types.js';
import type { ChatCompletionChunk, ChatCompletionRequest, StreamEvent } from '../../providers/types.js';
import { type Guardrail, languageOf, messageFor } from './config.js';

/** Where an answer Colloquy wrote itself (a referral) came from: recorded in usage like any route. */
function guardrailRoute(request: GatewayRequest, guardrail: string): RouteInfo {
  return {
    requestedModel: request.body.model,
    provider: 'guardrail',
    deployment: `guardrail/${guardrail}`,
    upstreamModel: request.body.model,
    attempts: 0,
    fallback: false,
  };
}

/** A referral answered without calling the model, as a completion: every protocol renders it as an answer. */
export function referralCompletion(
  request: GatewayRequest,
  guardrail: string,
  text: string,
): CompletionResult {
  return {
    completion: {
      id: `chatcmpl-${request.requestId}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: request.body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
    },
    route: guardrailRoute(request, guardrail),
    latencyMs: 0,
  };
}

export function referralStream(request: GatewayRequest, guardrail: string, text: string): StreamResult {
  const base = {
    id: `chatcmpl-${request.requestId}`,
    object: 'chat.completion.chunk' as const,
    created: Math.floor(Date.now() / 1000),
    model: request.body.model,
  };
  const chunks: ChatCompletionChunk[] = [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
    { ...base, choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } },
  ];
  return {
    route: guardrailRoute(request, guardrail),
    ttftMs: 0,
    events: (async function* () {
      for (const chunk of chunks) yield { chunk } as StreamEvent;
    })(),
  };
}

const ASKS_IF_AI =
  /\b(?:are you (?:an? )?(?:ai|bot|robot|human|real person|machine|person)|am i talking to (?:an? )?(?:ai|bot|human|real person|machine))\b|你是(?:不是)?(?:真人|人工智能|机器人|ai|人类|人)吗?/iu;

/**
 * The reminder to put before this answer, if any (issue 22's disclosure, SB 243's "reminders"): at the first
 * user turn and every `every_turns` after, and whenever the user asks whether they talk to an AI.
 */
export function reminderFor(reminders: Guardrail[], body: ChatCompletionRequest): string | undefined {
  if (!reminders.length) return undefined;
  const users = body.messages.filter((m) => m.role === 'user');
  const text = lastUserText(body);
  for (const r of reminders) {
    // A break reminder is due by the session's length (sessions.ts), not by turns.
    if (r.breakAfterMs) continue;
    const every = r.everyTurns ?? 10;
    if ((users.length - 1) % every === 0 || ASKS_IF_AI.test(text))
      return messageFor(r.messages ?? {}, languageOf(text));
  }
  return undefined;
}

/** The newest user message's text (its text parts joined): which language a reminder is written in. */
export function lastUserText(body: ChatCompletionRequest): string {
  const last = body.messages.findLast((m) => m.role === 'user');
  return typeof last?.content === 'string'
    ? last.content
    : Array.isArray(last?.content)
      ? last.content.map((p) => (typeof p.text === 'string' ? p.text : '')).join(' ')
      : '';
}

/**
 * Tells the operator of a referral (issue 22: "an operator notification fires"), in Alertmanager's API v2
 * shape (`POST /api/v2/alerts`, an array of alerts with labels, annotations and startsAt), so the receiver may
 * be an Alertmanager itself. Fire and forget: the user's answer never waits for it.
 */
export function notifyReferral(
  url: string,
  details: { guardrail: string; category: string; requestId: string; conversationId?: string | undefined },
  logger?: Logger,
) {
  const alert = {
    labels: {
      alertname: 'ColloquyCrisisReferral',
      severity: 'critical',
      guardrail: details.guardrail,
      category: details.category,
    },
    annotations: {
      summary: `A user was referred to a crisis line (${details.category}).`,
      request_id: details.requestId,
      ...(details.conversationId ? { conversation_id: details.conversationId } : {}),
    },
    startsAt: new Date().toISOString(),
  };
  void fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify([alert]),
    signal: AbortSignal.timeout(5_000),
  })
    .then((res) => res.body?.cancel())
    .catch((err) =>
      logger?.warn({ err, guardrail: details.guardrail }, 'could not notify of a crisis referral'),
    );
}

const ajv = new Ajv({ allErrors: false, strict: false });
const compiled = new Map<string, ValidateFunction | Error>();

/**
 * The validator for this answer: the guardrail's own schema, else the request's `response_format` (a
 * json_schema's schema, or any JSON for json_object); undefined when the request asks for no structure.
 */
export function structureOf(
  guardrail: Guardrail,
  body: ChatCompletionRequest,
): ((text: string) => boolean) | undefined {
  const format = body.response_format as { type?: string; json_schema?: { schema?: unknown } } | undefined;
  let validate = guardrail.validate;
  if (!validate && format?.type === 'json_schema' && format.json_schema?.schema) {
    const key = JSON.stringify(format.json_schema.schema);
    let entry = compiled.get(key);
    if (!entry) {
      try {
        entry = ajv.compile(format.json_schema.schema as object);
      } catch (err) {
        entry = err as Error;
      }
      // A bounded memo: clients that send a new schema each time must not grow the heap.
      if (compiled.size > 500) compiled.clear();
      compiled.set(key, entry);
    }
    if (entry instanceof Error) return undefined;
    validate = entry;
  }
  if (!validate && format?.type !== 'json_object') return undefined;
  return (text: string) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return false;
    }
    return validate ? validate(value) : true;
  };
}
