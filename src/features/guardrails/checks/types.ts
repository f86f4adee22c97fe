/** One thing a check found in a text: its category (`email`, `deny`, …) and where, for redaction. */
export interface Finding {
  category: string;
  start: number;
  end: number;
  /** What a rewrite puts there instead of the typed placeholder (a webhook's `rewrite`). */
  replacement?: string;
  /** A crisis finding's language (`en`, `zh`): which referral template answers it. */
  language?: string;
}

import type { ChatCompletionRequest } from '../../../providers/types.js';

/** What a check may know about the text it inspects (webhooks pass it on). */
export interface CheckContext {
  requestId: string;
  guardrail: string;
  stage: string;
  model?: string | undefined;
  /** Ends a check that calls out when its guardrail's time is up. */
  signal?: AbortSignal | undefined;
  /** Calls a chat model through Colloquy's router and answers its text (moderation by a chat model). */
  classify?: ((body: ChatCompletionRequest, signal?: AbortSignal) => Promise<string>) | undefined;
}

/**
 * A check inspects one text and reports what it found; the guardrail's action decides what happens then.
 * Built-in checks are synchronous (a few µs); a check that calls out (moderation, webhook) returns a promise
 * and runs under the guardrail's timeout.
 */
export interface Check {
  find(text: string, context?: CheckContext): Finding[] | Promise<Finding[]>;
}
