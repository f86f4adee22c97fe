import { AppError } from '../../core/errors.js';
import type { CheckContext, Finding } from './checks/types.js';
import { type Action, type Guardrail, messageFor, type Stage } from './config.js';

/** One guardrail's verdict on one text: what is recorded (never the matched text itself). */
export interface Verdict {
  guardrail: string;
  stage: Stage;
  /** What was done; `error` when the check threw or timed out and the guardrail fails open. */
  action: Action | 'error';
  /** The first finding's category (`email`, `deny`, …), or `error` / `timeout`. */
  category: string;
}

export type VerdictSink = (verdict: Verdict) => void;

/** What one request's checks share: who asks (webhooks pass it on) and its reversible masks. */
export interface StageContext {
  requestId: string;
  model?: string | undefined;
  masks?: MaskTable | undefined;
  /** A chat model through the router, for checks that classify with one. */
  classify?: CheckContext['classify'];
}

/** Reversible masking (action `mask`): `[EMAIL_1]` ↔ the address, for one request only. */
export class MaskTable {
  readonly #byOriginal = new Map<string, string>();
  readonly byPlaceholder = new Map<string, string>();
  readonly #counts = new Map<string, number>();

  placeholderFor(category: string, original: string): string {
    const known = this.#byOriginal.get(original);
    if (known) return known;
    const n = (this.#counts.get(category) ?? 0) + 1;
    this.#counts.set(category, n);
    const token = `${placeholder(category).slice(0, -1)}_${n}]`;
    this.#byOriginal.set(original, token);
    this.byPlaceholder.set(token, original);
    return token;
  }

  get size() {
    return this.byPlaceholder.size;
  }
}

const PLACEHOLDERS: Record<string, string> = {
  email: '[EMAIL]',
  phone: '[PHONE]',
  card: '[CARD]',
  iban: '[IBAN]',
  ip: '[IP]',
  secret: '[SECRET]',
};

export function placeholder(category: string): string {
  return PLACEHOLDERS[category] ?? '[REDACTED]';
}

export function blocked(guardrail: Guardrail): AppError {
  return new AppError('guardrail_blocked', `Blocked by guardrail "${guardrail.name}" (${guardrail.stage}).`);
}

/** A crisis check matched: the request is answered with the operator's referral, the model is not called. */
export class Referral extends Error {
  constructor(
    readonly guardrail: Guardrail,
    readonly category: string,
    readonly text: string,
  ) {
    super(`referral by guardrail "${guardrail.name}"`);
  }
}

/**
 * Runs one guardrail's check under its timeout. A synchronous check (every built-in one) is called
 * directly, no promise or timer made: the hot path of a configured pack is a few regex scans. A check that
 * calls out gets a signal that ends its call when the time is up.
 */
export async function findings(
  guardrail: Guardrail,
  text: string,
  context?: StageContext,
): Promise<Finding[] | 'error' | 'timeout'> {
  let result: Finding[] | Promise<Finding[]>;
  const controller = guardrail.check.find.length > 1 ? new AbortController() : undefined;
  const checkContext: CheckContext | undefined = controller
    ? {
        requestId: context?.requestId ?? '',
        guardrail: guardrail.name,
        stage: guardrail.stage,
        model: context?.model,
        signal: controller.signal,
        classify: context?.classify,
      }
    : undefined;
  try {
    result = guardrail.check.find(text, checkContext);
  } catch {
    return 'error';
  }
  if (Array.isArray(result)) return result;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), guardrail.timeoutMs);
  });
  try {
    return await Promise.race([result.catch(() => 'error' as const), timeout]);
  } finally {
    clearTimeout(timer);
    controller?.abort();
  }
}

/** Actions that change the text: the next guardrail must see the result, so they run one after another. */
const REWRITES = new Set<Action>(['redact', 'mutate', 'mask']);

/**
 * The guardrails as they apply to a tool call's arguments: one that would rewrite them blocks instead (a
 * redacted JSON document is not the call the model made, and may no longer parse).
 */
export function blockOnly(guardrails: Guardrail[]): Guardrail[] {
  return guardrails.map((g) => (REWRITES.has(g.action) ? { ...g, action: 'block' as const } : g));
}

/**
 * Applies a stage's guardrails to one text in order and returns the text to continue with (redacted where a
 * guardrail redacts); throws `guardrail_blocked` on a block, or on a failing check that fails closed, and a
 * Referral on a crisis. Guardrails that only look (block, flag, log, refer) next to each other run at the same
 * time, so a webhook and a moderation call cost the slower of the two, not the sum; their verdicts still
 * apply in the configured order. `from` limits what counts to findings that end after it (a stream's window
 * repeats text already checked).
 */
export async function applyStage(
  guardrails: Guardrail[],
  text: string,
  sink: VerdictSink,
  from = 0,
  context?: StageContext,
): Promise<string> {
  let current = text;
  for (let i = 0; i < guardrails.length; ) {
    let j = i + 1;
    if (!REWRITES.has(guardrails[i]!.action))
      while (j < guardrails.length && !REWRITES.has(guardrails[j]!.action)) j++;
    const group = guardrails.slice(i, j);
    const results =
      group.length === 1
        ? [await findings(group[0]!, current, context)]
        : await Promise.all(group.map((g) => findings(g, current, context)));
    for (const [k, guardrail] of group.entries())
      current = settle(guardrail, results[k]!, current, sink, from, context);
    i = j;
  }
  return current;
}

function settle(
  guardrail: Guardrail,
  found: Finding[] | 'error' | 'timeout',
  current: string,
  sink: VerdictSink,
  from: number,
  context: StageContext | undefined,
): string {
  if (found === 'error' || found === 'timeout') {
    sink({
      guardrail: guardrail.name,
      stage: guardrail.stage,
      action: guardrail.failClosed ? 'block' : 'error',
      category: found,
    });
    if (guardrail.failClosed) throw blocked(guardrail);
    return current;
  }
  const relevant = from > 0 ? found.filter((f) => f.end > from) : found;
  if (!relevant.length) return current;
  const first = relevant[0]!;
  sink({
    guardrail: guardrail.name,
    stage: guardrail.stage,
    action: guardrail.action,
    category: first.category,
  });
  switch (guardrail.action) {
    case 'block':
      throw blocked(guardrail);
    case 'refer':
      throw new Referral(guardrail, first.category, messageFor(guardrail.messages ?? {}, first.language));
    case 'redact':
    case 'mutate':
      return redact(current, relevant, from);
    case 'mask':
      return redact(current, relevant, from, context?.masks);
    default:
      return current;
  }
}

/** Replaces each finding (sorted, non-overlapping) with its placeholder or rewrite; never before `from`. */
export function redact(text: string, found: Finding[], from = 0, masks?: MaskTable): string {
  let out = '';
  let at = 0;
  for (const f of [...found].sort((a, b) => a.start - b.start)) {
    const start = Math.max(f.start, from, at);
    if (f.end <= start) continue;
    const replacement =
      f.replacement ??
      (masks ? masks.placeholderFor(f.category, text.slice(start, f.end)) : placeholder(f.category));
    out += text.slice(at, start) + replacement;
    at = f.end;
  }
  return out + text.slice(at);
}
