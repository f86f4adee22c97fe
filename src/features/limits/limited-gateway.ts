import { AppError } from '../../core/errors.js';
import type {
  ChatGateway,
  CompletionResult,
  GatewayRequest,
  StreamResult,
} from '../../providers/router/types.js';
import { TextBuffer } from '../../providers/text-buffer.js';
import { estimatePromptTokens, estimateUsage } from '../../providers/tokens.js';
import type { ChatCompletionRequest, StreamEvent, Usage } from '../../providers/types.js';
import type { Principal } from '../auth/principal.js';
import type { PriceTable } from '../usage/prices.js';
import { type BudgetService, worstCaseCost } from './budgets.js';
import type { RateLimitService } from './rate-limits.js';

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

  listModels() {
    return this.inner.listModels();
  }

  deploymentStates() {
    return this.inner.deploymentStates?.() ?? [];
  }

  providerHealth() {
    return this.inner.providerHealth?.() ?? [];
  }

  /** Rethrows `err`, counting it first when it is a limit's refusal. */
  #counted(request: GatewayRequest, err: unknown): never {
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
  #unlimited(request: GatewayRequest): boolean {
    const principal = request.caller?.principal;
    if (!principal) return true;
    const { rateLimits, budgets } = this.limits;
    return !rateLimits.applies(principal) && budgets.knownNone(principal);
  }

  async complete(request: GatewayRequest): Promise<CompletionResult> {
    if (this.#unlimited(request)) return this.inner.complete(request);
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

  async stream(request: GatewayRequest): Promise<StreamResult> {
    if (this.#unlimited(request)) return this.inner.stream(request);
    const admission = await this.#admit(request).catch((err) => this.#counted(request, err));
    if (!admission) return this.inner.stream(request);
    const releaseSlot = await this.limits.rateLimits
      .acquireStream(request.caller!.principal)
      .catch(async (err) => {
        await admission.release();
        return this.#counted(request, err);
      });
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

  async #admit(request: GatewayRequest) {
    const caller = request.caller;
    if (!caller) return undefined;
    const { rateLimits, budgets, prices } = this.limits;
    const body = request.body;
    // The prompt's size is estimated, not counted, as OpenAI's own limits do: a few µs, where the tokenizer
    // would cost a trip to its worker on every request. Usage settles to the actual figures afterwards. Read
    // only when a token limit or a budget is there to check, hence the getters.
    let worst: { usd: number; tokens: number } | undefined;
    const worstCase = () =>
      (worst ??= worstCaseCost(prices, {
        model: body.model,
        promptTokens: estimatePromptTokens(body.messages),
        maxOutputTokens: body.max_completion_tokens ?? body.max_tokens,
      }));
    const { headers } = await rateLimits.check(caller.principal, caller.ip, {
      get estimatedTokens() {
        return worstCase().tokens;
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
