import { AppError } from '../../core/errors.js';
import type {
  ChatGateway,
  CompletionResult,
  GatewayRequest,
  StreamResult,
} from '../../providers/router/types.js';
import { TextBuffer } from '../../providers/text-buffer.js';
import { countPromptTokens, countTextTokens } from '../../providers/tokens.js';
import type { StreamEvent, Usage } from '../../providers/types.js';
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

  async complete(request: GatewayRequest): Promise<CompletionResult> {
    const admission = await this.#admit(request).catch((err) => this.#counted(request, err));
    if (!admission) return this.inner.complete(request);
    try {
      const result = await this.inner.complete(request);
      const text = result.completion.choices.map((c) => c.message.content ?? '').join('');
      await admission.settle(result.completion.usage ?? estimate(request, text), result.route.upstreamModel);
      return { ...result, headers: { ...result.headers, ...admission.headers } };
    } catch (err) {
      await admission.release();
      throw err;
    }
  }

  async stream(request: GatewayRequest): Promise<StreamResult> {
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
    const upstreamModel = result.route.upstreamModel;
    async function* events(): AsyncGenerator<StreamEvent> {
      let usage: Usage | undefined;
      const text = new TextBuffer();
      try {
        for await (const event of result.events) {
          if (event.chunk.usage) usage = event.chunk.usage;
          const content = event.chunk.choices[0]?.delta?.content;
          if (content) text.append(content);
          yield event;
        }
      } finally {
        // A partial stream still cost what it produced: settle to that, never release it for free.
        await Promise.all([
          releaseSlot(),
          admission!.settle(usage ?? estimate(request, text.toString()), upstreamModel),
        ]);
      }
    }
    return { ...result, events: events(), headers: { ...result.headers, ...admission.headers } };
  }

  async #admit(request: GatewayRequest) {
    const caller = request.caller;
    if (!caller) return undefined;
    const { rateLimits, budgets, prices } = this.limits;
    const body = request.body;
    // Counting the prompt's tokens costs a tokenizer pass (and loading its tables): done only when a token
    // limit or a budget is actually there to check, hence the getters.
    let worst: { usd: number; tokens: number } | undefined;
    const worstCase = () =>
      (worst ??= worstCaseCost(prices, {
        model: body.model,
        promptTokens: countPromptTokens(body.messages),
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

function estimate(request: GatewayRequest, completion: string): Usage {
  const prompt = countPromptTokens(request.body.messages);
  const completionTokens = countTextTokens(completion);
  return {
    prompt_tokens: prompt,
    completion_tokens: completionTokens,
    total_tokens: prompt + completionTokens,
  };
}
