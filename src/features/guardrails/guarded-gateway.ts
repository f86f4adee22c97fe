import { CallController } from '../../core/call-signal.js';
import type { Logger } from '../../core/logger.js';
import type {
  ChatGateway,
  CompletionResult,
  EmbedRequest,
  EmbedResult,
  GatewayRequest,
  StreamResult,
} from '../../providers/router/types.js';
import type { ChatCompletionRequest, StreamEvent } from '../../providers/types.js';
import { NATIVE_RESPONSE, type NativeProtocol } from '../../providers/types.js';
import {
  lastUserText,
  notifyReferral,
  referralCompletion,
  referralStream,
  reminderFor,
  structureOf,
} from './answers.js';
import { type Guardrail, type GuardrailSet, languageOf, messageFor } from './config.js';
import { guardInput } from './input.js';
import { unmaskStream } from './masks.js';
import { guardMessage } from './output-message.js';
import { guardStream } from './output-stream.js';
import { applyStage, blocked, MaskTable, Referral, type StageContext, type Verdict } from './pipeline.js';
import type { BreakClock } from './sessions.js';

/** Which guardrails apply to a request: the routing file's, the preset's and the stored ones, by scope. */
export type GuardrailResolver = (request: GatewayRequest) => GuardrailSet | undefined;

/** A crisis referral answered a request: what is told (the conversation API flags its conversation). */
export interface ReferralNotice {
  requestId: string;
  guardrail: string;
  category: string;
  conversationId?: string | undefined;
}

/** One call of a moderation check's chat model, made for `request`. */
export interface ClassifierCall {
  request: GatewayRequest;
  /** The classifier call's own id (`<request id>:moderation`, then `:moderation-2`…). */
  requestId: string;
  body: ChatCompletionRequest;
  result: CompletionResult;
  latencyMs: number;
}

/**
 * Puts the guardrails around every model call, whatever the client protocol (/v1/chat/completions,
 * /v1/messages, /v1/responses, the conversation API): input checks run on the internal request before the
 * upstream is called (a redacted request is what the upstream sees), parallel checks alongside the call
 * (nothing of the answer is released before they pass; a block aborts the call), output checks on the whole
 * answer (output-message.ts: its text, reasoning and tool-call arguments), or on the stream as it is
 * released (output-stream.ts). A block is an AppError `guardrail_blocked`
 * (400), which each protocol renders in its own error shape, in-band once a stream has started. A crisis
 * check answers with the operator's referral instead of calling the model.
 *
 * Sits inside LimitedGateway: a request refused by a limit is never inspected, and a guardrail's refusal
 * releases the limits' reservation like any failed call.
 */
export class GuardedGateway implements ChatGateway {
  constructor(
    private readonly inner: ChatGateway,
    private readonly resolve: GuardrailResolver,
    private readonly onVerdict: (requestId: string, verdict: Verdict) => void,
    private readonly logger?: Logger,
    private readonly hooks: {
      /** Awaited before the referral is answered, so the flag it writes is there when the user sees it. */
      onReferral?: (notice: ReferralNotice) => Promise<void>;
      /** Sessions for break reminders (without it, a break reminder never fires). */
      breaks?: BreakClock | undefined;
      /**
       * Told about each answer of a moderation check's chat model (awaited, never failing the check): its
       * usage is the caller's, in the ledger, their tokens per minute and their budgets, like any other call.
       */
      onClassified?: (call: ClassifierCall) => Promise<void>;
    } = {},
  ) {
    const embed = inner.embed?.bind(inner);
    if (embed) this.embed = embed;
  }

  get onAttemptFailed() {
    return this.inner.onAttemptFailed;
  }

  set onAttemptFailed(fn) {
    this.inner.onAttemptFailed = fn;
  }

  hasModel(model: string) {
    return this.inner.hasModel(model);
  }

  /**
   * An upstream sees only what the input guardrails let through: with any that apply, the prompt is not
   * sent to be counted (undefined: the caller estimates).
   */
  countTokens(request: GatewayRequest) {
    const set = this.resolve(request);
    if (set && (set.input.length > 0 || set.parallel.length > 0)) return Promise.resolve(undefined);
    return this.inner.countTokens?.(request) ?? Promise.resolve(undefined);
  }

  providerKinds(model: string) {
    return this.inner.providerKinds?.(model) ?? [];
  }

  nativeSupport(model: string, protocol: NativeProtocol) {
    return this.inner.nativeSupport?.(model, protocol) ?? 'none';
  }

  modelEndpoints(model: string) {
    return this.inner.modelEndpoints?.(model) ?? [];
  }

  listModels() {
    return this.inner.listModels();
  }

  async findModel(model: string) {
    if (this.inner.findModel) return this.inner.findModel(model);
    return (await this.inner.listModels()).find((m) => m.id === model);
  }

  isKnownModel(model: string) {
    return this.inner.isKnownModel?.(model) ?? this.inner.hasModel(model);
  }

  deploymentStates() {
    return this.inner.deploymentStates?.() ?? [];
  }

  providerHealth() {
    return this.inner.providerHealth?.() ?? [];
  }

  /** Embeddings produce no text for anyone to read: passed through (their input is not checked either). */
  readonly embed?: (request: EmbedRequest) => Promise<EmbedResult>;

  #context(request: GatewayRequest): StageContext {
    // A request may classify more than once (input and output, several guardrails): one ledger row each,
    // and the ledger is idempotent on the request id.
    let calls = 0;
    return {
      requestId: request.requestId,
      model: request.body.model,
      masks: new MaskTable(),
      // A moderation check with a chat model calls it through the router below the guardrails (so its
      // prompt is not itself checked) and below the limits (the caller's request was admitted already:
      // refusing the check halfway would hand the text to on_error), on behalf of the same caller; its own
      // answer is never shown. onClassified settles its usage against the caller's limits afterwards.
      classify: async (body, signal) => {
        calls += 1;
        const requestId = `${request.requestId}:moderation${calls > 1 ? `-${calls}` : ''}`;
        const started = performance.now();
        const result = await this.inner.complete({ body, requestId, signal, caller: request.caller });
        const latencyMs = performance.now() - started;
        await this.hooks
          .onClassified?.({ request, requestId, body, result, latencyMs })
          .catch((e: unknown) => this.logger?.warn({ err: e }, 'could not record a classifier call'));
        return result.completion.choices[0]?.message.content ?? '';
      },
    };
  }

  /** The input stage; a crisis answers with its referral (returned), anything else blocks (thrown). */
  async #input(set: GuardrailSet, request: GatewayRequest, context: StageContext) {
    const sink = (verdict: Verdict) => this.onVerdict(request.requestId, verdict);
    try {
      return { body: await guardInput(set.input, request.body, sink, context) };
    } catch (err) {
      if (!(err instanceof Referral)) throw err;
      // The referral is answered even when recording it fails: the user in crisis comes first.
      await this.hooks
        .onReferral?.({
          requestId: request.requestId,
          guardrail: err.guardrail.name,
          category: err.category,
          conversationId: request.context?.conversationId,
        })
        .catch((e: unknown) => this.logger?.warn({ err: e }, 'could not record a crisis referral'));
      if (err.guardrail.notifyUrl)
        notifyReferral(
          err.guardrail.notifyUrl,
          {
            guardrail: err.guardrail.name,
            category: err.category,
            requestId: request.requestId,
            conversationId: request.context?.conversationId,
          },
          this.logger,
        );
      return { referral: err };
    }
  }

  /**
   * Parallel checks over the newest user message, alongside the upstream call: their failure aborts the call
   * (the caller's own signal still aborts it too) and is what the caller sees.
   */
  #parallel(set: GuardrailSet, request: GatewayRequest, body: ChatCompletionRequest, context: StageContext) {
    if (!set.parallel.length) return { request: { ...request, body }, checks: undefined };
    // The request's signal is a CallSignal (src/core/call-signal.ts), which Node 24's AbortSignal.any()
    // refuses: the caller's abort is forwarded by hand.
    const controller = new CallController();
    const outer = request.signal;
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', () => controller.abort(outer.reason), { once: true });
    const signal = controller.signal;
    const last = body.messages.findLast((m) => m.role === 'user');
    const text =
      typeof last?.content === 'string'
        ? last.content
        : (last?.content ?? []).map((p) => (typeof p.text === 'string' ? p.text : '')).join('\n');
    const sink = (verdict: Verdict) => this.onVerdict(request.requestId, verdict);
    const checks = applyStage(set.parallel, text, sink, 0, context).then(
      () => undefined,
      (err: unknown) => {
        controller.abort(err);
        throw err;
      },
    );
    return { request: { ...request, body, signal }, checks };
  }

  complete(request: GatewayRequest): Promise<CompletionResult> {
    // Without a guardrail the call is handed straight on: no async frame, nor its promise resolved with the
    // inner one (a job and two closures per request). Failures still come as rejections, never thrown.
    try {
      const set = this.resolve(request);
      return set ? this.#completeGuarded(request, set) : this.inner.complete(request);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #completeGuarded(request: GatewayRequest, set: GuardrailSet): Promise<CompletionResult> {
    const sink = (verdict: Verdict) => this.onVerdict(request.requestId, verdict);
    const context = this.#context(request);
    const input = await this.#input(set, request, context);
    if (input.referral)
      return referralCompletion(request, input.referral.guardrail.name, input.referral.text);
    const parallel = this.#parallel(set, request, input.body!, context);
    const call = (async () => {
      const result = await this.inner.complete(parallel.request);
      const structured = set.structured[0];
      const valid = structured && structureOf(structured, parallel.request.body);
      if (!valid || valid(result.completion.choices[0]?.message.content ?? '')) return result;
      // One automatic retry (issue 22); a second invalid answer is blocked.
      sink({ guardrail: structured.name, stage: 'output', action: 'mutate', category: 'schema' });
      const again = await this.inner.complete(parallel.request);
      if (valid(again.completion.choices[0]?.message.content ?? '')) return again;
      sink({ guardrail: structured.name, stage: 'output', action: 'block', category: 'schema' });
      throw blocked(structured);
    })();
    if (parallel.checks) call.catch(() => {});
    const [result] = await Promise.all([call, parallel.checks]);
    const reminder = await this.#reminder(set, request);
    const masked = context.masks!.size > 0;
    if (!set.output.length && !reminder && !masked) return result;
    const choices = [];
    for (const choice of result.completion.choices) {
      let message = await guardMessage(choice.message, set, sink, context);
      if (reminder && choice.index === 0)
        message = { ...message, content: `${reminder}\n\n${message.content ?? ''}` };
      choices.push(message === choice.message ? choice : { ...choice, message });
    }
    const completion = { ...result.completion, choices };
    // The upstream's own answer (Messages pass-through) would bypass the checks: never relayed when guarded.
    delete completion[NATIVE_RESPONSE];
    return { ...result, completion };
  }

  async stream(request: GatewayRequest): Promise<StreamResult> {
    const set = this.resolve(request);
    if (!set) return this.inner.stream(request);
    const sink = (verdict: Verdict) => this.onVerdict(request.requestId, verdict);
    const context = this.#context(request);
    const input = await this.#input(set, request, context);
    if (input.referral) return referralStream(request, input.referral.guardrail.name, input.referral.text);
    const parallel = this.#parallel(set, request, input.body!, context);
    const structured = set.structured[0];
    const valid = structured && structureOf(structured, parallel.request.body);
    const call = valid
      ? this.#structuredStream(parallel.request, valid, structured, sink)
      : this.inner.stream(parallel.request);
    if (parallel.checks) call.catch(() => {});
    // The stream is handed over (its first byte released) only once the parallel checks have passed.
    const [result] = await Promise.all([call, parallel.checks]).catch((err: unknown) => {
      // Refused before its first byte: the upstream stream already begun is released now, not left holding
      // its connection (and its first-token timer) until the upstream gives up.
      void call.then((begun) => begun.cancel?.()).catch(() => {});
      throw err;
    });
    let events = result.events;
    const masked = context.masks!.size > 0;
    if (masked) events = unmaskStream(events, context.masks!);
    if (set.output.length) events = guardStream(events, set, sink, context);
    const reminder = await this.#reminder(set, request);
    if (reminder) events = withReminder(events, reminder);
    return events === result.events ? result : { ...result, events };
  }

  /**
   * What goes before this answer: a break reminder when the caller's session has lasted long enough (every
   * break guardrail records the activity, whether it fires or not), then a turn reminder (the AI disclosure).
   */
  async #reminder(set: GuardrailSet, request: GatewayRequest): Promise<string | undefined> {
    if (!set.reminders.length) return undefined;
    const texts: string[] = [];
    const principal = request.caller?.principal;
    const subject = principal?.userId
      ? `user:${principal.userId}`
      : principal?.apiKeyId
        ? `key:${principal.apiKeyId}`
        : undefined;
    const breaks = set.reminders.filter((r) => r.breakAfterMs);
    if (subject && breaks.length && this.hooks.breaks) {
      const language = languageOf(lastUserText(request.body));
      for (const r of breaks) {
        const due = await this.hooks.breaks.due(subject, r.name, r.breakAfterMs!).catch(() => false);
        if (due && !texts.length) texts.push(messageFor(r.messages ?? {}, language));
      }
    }
    const turn = reminderFor(set.reminders, request.body);
    if (turn) texts.push(turn);
    return texts.length ? texts.join('\n\n') : undefined;
  }

  /**
   * A structured answer is validated whole before any of it is released (a half-sent JSON document is of no
   * use to anyone), with one retry, then replayed as it came.
   */
  async #structuredStream(
    request: GatewayRequest,
    valid: (text: string) => boolean,
    guardrail: Guardrail,
    sink: (verdict: Verdict) => void,
  ): Promise<StreamResult> {
    for (let attempt = 1; ; attempt++) {
      const result = await this.inner.stream(request);
      const events: StreamEvent[] = [];
      let text = '';
      for await (const event of result.events) {
        events.push({ chunk: event.chunk });
        text += event.chunk.choices[0]?.delta?.content ?? '';
      }
      if (valid(text))
        return {
          ...result,
          events: (async function* () {
            yield* events;
          })(),
        };
      sink({
        guardrail: guardrail.name,
        stage: 'output',
        action: attempt === 1 ? 'mutate' : 'block',
        category: 'schema',
      });
      if (attempt === 2) throw blocked(guardrail);
    }
  }
}

/** The reminder as the first text of the answer, in the first chunk that carries a choice. */
async function* withReminder(
  events: AsyncIterable<StreamEvent>,
  reminder: string,
): AsyncGenerator<StreamEvent> {
  let done = false;
  for await (const event of events) {
    const first = event.chunk.choices[0];
    if (done || !first) {
      yield event;
      continue;
    }
    done = true;
    const delta = { ...first.delta, content: `${reminder}\n\n${first.delta?.content ?? ''}` };
    yield { chunk: { ...event.chunk, choices: [{ ...first, delta }, ...event.chunk.choices.slice(1)] } };
  }
}
