import { AppError } from '../../core/errors.js';
import type {
  ChatGateway,
  CompletionResult,
  EmbedRequest,
  EmbedResult,
  GatewayRequest,
  StreamAdmission,
  StreamResult,
} from '../../providers/router/types.js';
import { TextBuffer } from '../../providers/text-buffer.js';
import { estimatePromptTokens, estimateUsage } from '../../providers/tokens.js';
import type {
  ChatCompletionRequest,
  EmbeddingRequest,
  NativeProtocol,
  StreamEvent,
  Usage,
} from '../../providers/types.js';
import type { Principal } from '../auth/principal.js';
import type { PriceTable } from '../usage/prices.js';
import { type BudgetService, type StoredReservation, worstCaseCost } from './budgets.js';
import type { RateLimitService } from './rate-limits.js';

/**
 * An API key restricted to some models (its allowed_models) may call only those, by the name it asks for
 * (a route or alias name as the client sends it), on every protocol and in conversations alike.
 */
function assertModelAllowed(request: Pick<GatewayRequest, 'caller'>, model: string) {
  const allowed = request.caller?.principal.allowedModels;
  if (allowed && !allowed.includes(model))
    throw new AppError('model_not_allowed', `this API key may not use the model ${model}`, {
      param: 'model',
    });
}

/**
 * Puts rate limits and budgets in front of every model call, for the /v1 API and conversations alike: the
 * request is counted and its worst case reserved before any provider is called (refused with 429 otherwise),
 * a stream holds a concurrency slot while open, and the reservation settles to the actual cost at the end.
 */
export class LimitedGateway implements ChatGateway {
  constructor(
    private readonly inner: ChatGateway,
    private readonly limits: { rateLimits: RateLimitService; budgets: BudgetService; prices: PriceTable },
  ) {}

  /** Told about every request refused with 429 by a rate limit or a budget (counted for the console). */
  onRejected: ((principal: Principal, code: 'rate_limited' | 'budget_exceeded') => void) | undefined;

  get onAttemptFailed() {
    return this.inner.onAttemptFailed;
  }

  set onAttemptFailed(fn) {
    this.inner.onAttemptFailed = fn;
  }

  hasModel(model: string) {
    return this.inner.hasModel(model);
  }

  /** Counting is free at the upstream and answers nothing: not metered, not limited. */
  countTokens(request: GatewayRequest) {
    return this.inner.countTokens?.(request) ?? Promise.resolve(undefined);
  }

  providerKinds(model: string) {
    return this.inner.providerKinds?.(model) ?? [];
  }

  modelEndpoints(model: string) {
    return this.inner.modelEndpoints?.(model) ?? [];
  }

  nativeSupport(model: string, protocol: NativeProtocol) {
    return this.inner.nativeSupport?.(model, protocol) ?? 'none';
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

  /** Rethrows `err`, counting it first when it is a limit's refusal. */
  #counted(request: Pick<GatewayRequest, 'caller'>, err: unknown): never {
    const principal = request.caller?.principal;
    if (
      principal &&
      err instanceof AppError &&
      (err.code === 'rate_limited' || err.code === 'budget_exceeded')
    )
      this.onRejected?.(principal, err.code);
    throw err;
  }

  /**
   * No rate limit is on for the caller and neither its key nor its user has a budget (known from the budget
   * cache): nothing to check, reserve or settle, so the call goes straight through. Most requests of most
   * deployments take this path; it skips the admission's promises and allocations (~6 % of a request's).
   */
  #unlimited(request: Pick<GatewayRequest, 'caller'>): boolean {
    const principal = request.caller?.principal;
    if (!principal) return true;
    const { rateLimits, budgets } = this.limits;
    return !rateLimits.applies(principal) && budgets.knownNone(principal);
  }

  complete(request: GatewayRequest): Promise<CompletionResult> {
    // The fast path is handed straight on: no async frame, nor its promise resolved with the inner one (a job
    // and two closures per request). Refusals still come as rejections, never thrown.
    try {
      assertModelAllowed(request, request.body.model);
      return this.#unlimited(request) ? this.#completeUnlimited(request) : this.#completeLimited(request);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async #completeLimited(request: GatewayRequest): Promise<CompletionResult> {
    const admission = await this.#admit(request).catch((err) => this.#counted(request, err));
    if (!admission) return this.inner.complete(request);
    try {
      const result = await this.inner.complete(request);
      const { completion } = result;
      await admission.settle(
        completion.usage ??
          (await estimateUsage(
            request.body.messages,
            completion.choices.map((c) => c.message.content ?? '').join(''),
          )),
        result.route.upstreamModel,
      );
      return { ...result, headers: { ...result.headers, ...admission.headers } };
    } catch (err) {
      await admission.release();
      throw err;
    }
  }

  /**
   * The fast path, still charged to a budget set while the call ran (on any replica): it was admitted when
   * none existed, so it reserved nothing, but it is in the ledger and must be in the budget's spend too.
   */
  async #completeUnlimited(request: GatewayRequest): Promise<CompletionResult> {
    const principal = request.caller?.principal;
    const { budgets, prices } = this.limits;
    const since = budgets.store.changes;
    const result = await this.inner.complete(request);
    const usage = result.completion.usage;
    if (principal && usage && budgets.store.changes !== since) {
      const cost = prices.cost(result.route.upstreamModel, usage.prompt_tokens, usage.completion_tokens);
      await budgets.chargeUnreserved(principal, since, cost, usage.prompt_tokens + usage.completion_tokens);
    }
    return result;
  }

  /** The checks and reservations of `stream()`, ahead of it (see ChatGateway.admitStream). */
  async admitStream(request: GatewayRequest): Promise<HeldAdmission | undefined> {
    assertModelAllowed(request, request.body.model);
    if (this.#unlimited(request)) return undefined;
    const admission = await this.#admit(request).catch((err) => this.#counted(request, err));
    if (!admission) return undefined;
    const releaseSlot = await this.limits.rateLimits
      .acquireStream(request.caller!.principal)
      .catch(async (err) => {
        await admission.release();
        return this.#counted(request, err);
      });
    return new HeldAdmission(admission, releaseSlot);
  }

  async stream(request: GatewayRequest): Promise<StreamResult> {
    const held = request.admission;
    if (held && !(held instanceof HeldAdmission)) throw new Error('an admission of another gateway');
    assertModelAllowed(request, request.body.model);
    if (!held && this.#unlimited(request)) return this.inner.stream(request);
    const ticket = (held as HeldAdmission | undefined) ?? (await this.admitStream(request));
    if (!ticket) return this.inner.stream(request);
    const { admission, releaseSlot } = ticket;
    let result: StreamResult;
    try {
      result = await this.inner.stream(request);
    } catch (err) {
      await Promise.all([releaseSlot(), admission.release()]);
      throw err;
    }
    const settle = (usage: Usage) =>
      Promise.all([releaseSlot(), admission.settle(usage, result.route.upstreamModel)]);
    return {
      ...result,
      events: settleWhenDone(result.events, request.body.messages, settle),
      headers: { ...result.headers, ...admission.headers },
    };
  }

  /**
   * Embeddings: counted by the rate limits and reserved against budgets like a chat call whose output costs
   * nothing (the worst case is the input's estimate), then settled to the input tokens the upstream counted.
   */
  async embed(request: EmbedRequest): Promise<EmbedResult> {
    const inner = this.inner.embed?.bind(this.inner);
    if (!inner) throw new AppError('invalid_request', 'embeddings are not available on this gateway');
    assertModelAllowed(request, request.body.model);
    if (this.#unlimited(request)) return inner(request);
    const body = request.body;
    const admission = await this.#admit(request, () => ({
      model: body.model,
      promptTokens: estimateEmbeddingTokens(body.input),
      maxOutputTokens: 0,
    })).catch((err) => this.#counted(request, err));
    if (!admission) return inner(request);
    try {
      const result = await inner(request);
      const prompt = result.response.usage?.prompt_tokens ?? estimateEmbeddingTokens(body.input);
      await admission.settle(
        { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt },
        result.route.upstreamModel,
      );
      return { ...result, headers: { ...result.headers, ...admission.headers } };
    } catch (err) {
      await admission.release();
      throw err;
    }
  }

  /**
   * Settles a model call made for the caller inside a request of theirs that was already admitted (a
   * moderation check's chat model): its tokens count against their tokens per minute and its cost against
   * their budgets, as a settled /v1 call's do. It is never refused: the caller's own request was checked
   * before it (a caller over a limit gets the 429 before any model is called), and refusing it halfway would
   * leave the guardrail to its `on_error` (open: unchecked text through). Nor is it a request of theirs:
   * requests per minute and per hour count what the caller sent, not the calls a guardrail makes for it.
   */
  async settleOnBehalf(principal: Principal, usage: Usage, upstreamModel: string): Promise<void> {
    const { rateLimits, budgets, prices } = this.limits;
    const tokens = usage.prompt_tokens + usage.completion_tokens;
    const cost = prices.cost(upstreamModel, usage.prompt_tokens, usage.completion_tokens);
    await Promise.all([
      budgets.knownNone(principal) ? undefined : budgets.charge(principal, cost, tokens),
      rateLimits.recordTokens(principal, tokens),
    ]);
  }

  async settleAbandoned(ticket: unknown, usage: Usage, model: string): Promise<void> {
    const stored = ticket as StoredReservation | undefined;
    if (!stored || typeof stored.id !== 'string' || !Array.isArray(stored.counters)) return;
    const cost = this.limits.prices.cost(model, usage.prompt_tokens, usage.completion_tokens);
    await this.limits.budgets.settleStored(stored, cost, usage.prompt_tokens + usage.completion_tokens);
  }

  async #admit(
    request: Pick<GatewayRequest, 'caller' | 'requestId'> & {
      body: ChatCompletionRequest | EmbeddingRequest;
    },
    shape: () => { model: string; promptTokens: number; maxOutputTokens: number | null | undefined } = () => {
      const body = request.body as ChatCompletionRequest;
      return {
        model: body.model,
        promptTokens: estimatePromptTokens(body.messages),
        maxOutputTokens: body.max_completion_tokens ?? body.max_tokens,
      };
    },
  ) {
    const caller = request.caller;
    if (!caller) return undefined;
    const { rateLimits, budgets, prices } = this.limits;
    // The prompt's size is estimated, not counted, as OpenAI's own limits do: a few µs, where the tokenizer
    // would cost a trip to its worker on every request. Usage settles to the actual figures afterwards. Read
    // only when a token limit or a budget is there to check, hence the getters.
    let worst: { usd: number; tokens: number } | undefined;
    let sized: ReturnType<typeof shape> | undefined;
    const size = () => (sized ??= shape());
    const worstCase = () => (worst ??= worstCaseCost(prices, size()));
    const { headers } = await rateLimits.check(caller.principal, caller.ip, {
      get promptTokens() {
        return size().promptTokens;
      },
      get maxOutputTokens() {
        return size().maxOutputTokens;
      },
    });
    const reservation = await budgets.reserve({
      principal: caller.principal,
      requestId: request.requestId,
      get worstCaseUsd() {
        return worstCase().usd;
      },
      get worstCaseTokens() {
        return worstCase().tokens;
      },
    });
    let done = false;
    return {
      headers,
      ticket: budgets.describe(reservation),
      settle: async (usage: Usage, upstreamModel: string) => {
        if (done) return;
        done = true;
        const cost = prices.cost(upstreamModel, usage.prompt_tokens, usage.completion_tokens);
        await budgets.settle(reservation, cost, usage.prompt_tokens + usage.completion_tokens);
        void rateLimits.recordTokens(caller.principal, usage.prompt_tokens + usage.completion_tokens);
      },
      release: async () => {
        if (done) return;
        done = true;
        await budgets.release(reservation);
      },
    };
  }
}

/** What #admit reserved: settled to the actual cost at the end, or released when no call was made. */
interface Admitted {
  headers: Record<string, string>;
  ticket: StoredReservation | undefined;
  settle(usage: Usage, upstreamModel: string): Promise<void>;
  release(): Promise<void>;
}

/** A stream's admission (reservation and concurrency slot) held until the stream settles or it is released. */
class HeldAdmission implements StreamAdmission {
  constructor(
    readonly admission: Admitted,
    readonly releaseSlot: () => Promise<unknown>,
  ) {}

  get headers() {
    return this.admission.headers;
  }

  get ticket() {
    return this.admission.ticket;
  }

  async release() {
    await Promise.all([this.releaseSlot(), this.admission.release()]);
  }
}

/** An embeddings input's size in tokens, estimated like a prompt's (4 characters a token; token ids counted). */
export function estimateEmbeddingTokens(input: EmbeddingRequest['input']): number {
  if (typeof input === 'string') return Math.ceil(input.length / 4);
  let tokens = 0;
  for (const item of input as unknown[]) {
    if (typeof item === 'string') tokens += Math.ceil(item.length / 4);
    else if (typeof item === 'number') tokens += 1;
    else if (Array.isArray(item)) tokens += item.length;
  }
  return tokens;
}

/**
 * Relays a stream and settles its cost once it ends, however it ends: a partial stream still cost what it
 * produced, so it is settled to that, never released for free. Module-level, like every stream generator.
 */
async function* settleWhenDone(
  events: AsyncIterable<StreamEvent>,
  messages: ChatCompletionRequest['messages'],
  settle: (usage: Usage) => Promise<unknown>,
): AsyncGenerator<StreamEvent> {
  let usage: Usage | undefined;
  const text = new TextBuffer();
  try {
    for await (const event of events) {
      if (event.chunk.usage) usage = event.chunk.usage;
      const content = event.chunk.choices[0]?.delta?.content;
      if (content) text.append(content);
      yield event;
    }
  } finally {
    await settle(usage ?? (await estimateUsage(messages, text.toString())));
  }
}
