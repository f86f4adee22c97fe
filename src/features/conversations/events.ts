import { CallController } from '../../core/call-signal.js';
import type { ProviderError } from '../../providers/errors.js';
import type { GatewayRequest, StreamAdmission } from '../../providers/router/types.js';
import type { ChatCompletionRequest, Usage } from '../../providers/types.js';
import type { MessageRow } from './store.js';
import type { GenerationKind } from './tables.js';

/**
 * A generation's events, numbered from 1 in the order they happened; SSE sends the number as `id:` so a
 * client that reconnects with Last-Event-ID gets exactly what it missed.
 *  - message: the user message this request stored ({message})
 *  - start:   the assistant message being written ({generation_id, message_id, conversation_id, …})
 *  - delta:   new text ({content})
 *  - done:    finished ({message, usage})
 *  - error:   stopped early or failed ({message, error: {code, message}, usage})
 */
export type GenerationEventType = 'message' | 'start' | 'delta' | 'done' | 'error';

export interface GenerationEvent {
  id: number;
  type: GenerationEventType;
  data: Record<string, unknown>;
}

export const isFinalEvent = (event: Pick<GenerationEvent, 'type'>) =>
  event.type === 'done' || event.type === 'error';

export interface GenerationOutcome {
  status: 'complete' | 'partial' | 'error';
  message: MessageRow;
  usage: Usage | null;
  error: { code: string; message: string } | null;
  /** The provider's error when it failed before the first chunk: a JSON (stream: false) answer relays it. */
  providerErrorBeforeStart: ProviderError | null;
}

export interface GenerationSpec {
  id: string;
  kind: GenerationKind;
  userId: string;
  apiKeyId: string | null;
  /** Who it runs for: guardrails attached to this role apply (issue 22); absent: `user`. */
  role?: 'admin' | 'user' | undefined;
  conversationId: string;
  /** The conversation's assistant: its guardrails apply (issue 22). */
  assistantId?: string | null;
  /** Emitted as the `message` event when this request stored one. */
  userMessage: MessageRow | null;
  /** The assistant row, already stored with status 'streaming'. */
  message: MessageRow;
  /** Text the message already had (continue): new text is appended to it. */
  prefix: string;
  priorCompletionTokens: number;
  body: ChatCompletionRequest;
  /** Set when the conversation has no title yet: the first user message, to derive one from. */
  titleSource: string | null;
  /** Replies (not regenerations or continuations) may come from the response cache: the assistant opted in. */
  cacheOptIn?: boolean;
  /** The limits checked and reserved before the rows were stored (released if the model is not called). */
  admission?: StreamAdmission | undefined;
}

/**
 * Rate limits and budgets apply to the user (or key) a generation runs for, and guardrails attached to their
 * role (issue 22): an admin's generation gets the admin role's guardrails, not the user role's.
 */
export function generationCaller(owner: {
  userId: string;
  apiKeyId: string | null;
  role?: 'admin' | 'user' | undefined;
  allowedModels?: string[] | null | undefined;
}): GatewayRequest['caller'] {
  return {
    principal: {
      userId: owner.userId,
      apiKeyId: owner.apiKeyId,
      role: owner.role ?? 'user',
      via: owner.apiKeyId ? 'api_key' : 'jwt',
      ...(owner.allowedModels ? { allowedModels: owner.allowedModels } : {}),
    },
  };
}

/** One generation running (or recently finished) in this process: its event log and who listens. */
export class LiveGeneration {
  readonly events: GenerationEvent[] = [];
  readonly controller = new CallController();
  text: string;
  cancelled = false;
  outcome: GenerationOutcome | undefined;
  readonly finished: Promise<GenerationOutcome>;
  #resolve!: (outcome: GenerationOutcome) => void;
  readonly #listeners = new Set<() => void>();

  #spec: GenerationSpec;

  constructor(spec: GenerationSpec) {
    this.#spec = spec;
    this.text = spec.prefix;
    this.finished = new Promise((resolve) => {
      this.#resolve = resolve;
    });
  }

  get spec(): GenerationSpec {
    return this.#spec;
  }

  get id() {
    return this.#spec.id;
  }

  /**
   * Once finished, only the event log is kept (for reconnections): the prompt (the whole trimmed conversation,
   * often the largest part) and the text so far are let go.
   */
  retire() {
    const { body } = this.#spec;
    this.#spec = {
      ...this.#spec,
      body: { model: body.model, messages: [] },
      userMessage: null,
      titleSource: null,
    };
    this.text = '';
  }

  get ended(): boolean {
    const last = this.events.at(-1);
    return last !== undefined && isFinalEvent(last);
  }

  append(type: GenerationEventType, data: Record<string, unknown>): GenerationEvent {
    const event: GenerationEvent = { id: this.events.length + 1, type, data };
    this.events.push(event);
    for (const wake of [...this.#listeners]) wake();
    return event;
  }

  finish(outcome: GenerationOutcome) {
    this.outcome = outcome;
    this.#resolve(outcome);
  }

  /** Events after `after`, then live ones as they happen, until the final event (or the signal aborts). */
  async *follow(after: number, signal?: AbortSignal): AsyncGenerator<GenerationEvent> {
    let next = Math.max(0, after);
    while (!signal?.aborted) {
      while (next < this.events.length) {
        const event = this.events[next++]!;
        yield event;
        if (isFinalEvent(event)) return;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#listeners.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.#listeners.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }
}
