import { createHmac } from 'node:crypto';
import type { Check, CheckContext, Finding } from './types.js';

export const SIGNATURE_HEADER = 'x-colloquy-signature';
export const TIMESTAMP_HEADER = 'x-colloquy-timestamp';

/** `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>`: the receiver recomputes it with the shared secret. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * An operator's endpoint decides (issue 22): it receives `{text, guardrail, stage, request_id, model}` as JSON,
 * signed (`X-Colloquy-Timestamp`, `X-Colloquy-Signature: sha256=<hex HMAC of "<timestamp>.<body>">`, so a
 * receiver can refuse forgeries and replays), and answers `{"action": "allow" | "block" | "rewrite",
 * "text"?: string, "category"?: string}`. No retries: the guardrail's timeout bounds the call, and its
 * on_error decides what a slow or failing endpoint means.
 */
export class WebhookCheck implements Check {
  constructor(private readonly options: { url: string; secret?: string | undefined }) {}

  async find(text: string, context?: CheckContext): Promise<Finding[]> {
    const body = JSON.stringify({
      text,
      guardrail: context?.guardrail,
      stage: context?.stage,
      request_id: context?.requestId,
      model: context?.model,
    });
    const timestamp = String(Math.floor(Date.now() / 1000));
    const res = await fetch(this.options.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [TIMESTAMP_HEADER]: timestamp,
        ...(this.options.secret
          ? { [SIGNATURE_HEADER]: signWebhook(this.options.secret, timestamp, body) }
          : {}),
      },
      body,
      signal: context?.signal,
    });
    if (!res.ok) throw new Error(`guardrail webhook answered ${res.status}`);
    const verdict = (await res.json()) as { action?: unknown; text?: unknown; category?: unknown };
    const category = typeof verdict.category === 'string' ? verdict.category.slice(0, 64) : 'webhook';
    if (verdict.action === 'allow') return [];
    if (verdict.action === 'block') return [{ category, start: 0, end: text.length }];
    if (verdict.action === 'rewrite' && typeof verdict.text === 'string')
      return verdict.text === text
        ? []
        : [{ category, start: 0, end: text.length, replacement: verdict.text }];
    throw new Error('guardrail webhook answered without a valid action');
  }
}
