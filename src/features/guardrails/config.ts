import { Ajv, type ValidateFunction } from 'ajv';
import { CrisisCheck, DEFAULT_REFERRALS } from './checks/crisis.js';
import { InjectionCheck } from './checks/injection.js';
import { ModerationCheck } from './checks/moderation.js';
import { ChatModerationCheck } from './checks/moderation-chat.js';
import { type PiiCategory, PiiCheck } from './checks/pii.js';
import { compilePattern, RegexCheck } from './checks/regex.js';
import type { Check } from './checks/types.js';
import { WebhookCheck } from './checks/webhook.js';
import type { Action, CheckName, GuardrailConfig, Stage } from './schema.js';

export { type Action, type GuardrailConfig, GuardrailSchema, type Stage } from './schema.js';

export interface Guardrail {
  name: string;
  stage: Stage;
  action: Action;
  kind: CheckName;
  check: Check;
  /** A check that throws or times out blocks the request (closed) or lets it through (open). */
  failClosed: boolean;
  timeoutMs: number;
  /** crisis: the referral per language; reminder: the reminder per language. */
  messages?: Record<string, string>;
  /** crisis: an Alertmanager-compatible receiver told of each referral. */
  notifyUrl?: string | undefined;
  /** json_schema: a fixed schema (else the request's response_format). */
  validate?: ValidateFunction | undefined;
  everyTurns?: number;
  /** reminder: a break reminder after a session this long (break_after_minutes), instead of every N turns. */
  breakAfterMs?: number | undefined;
}

/** The guardrails that apply to one request, in order, split by stage. */
export interface GuardrailSet {
  input: Guardrail[];
  /** Run alongside the upstream call; nothing of the answer is released before they pass. */
  parallel: Guardrail[];
  output: Guardrail[];
  /** json_schema guardrails: the whole answer is validated (one retry) before any of it is released. */
  structured: Guardrail[];
  /** reminder guardrails: a disclosure put before the answer every N user turns. */
  reminders: Guardrail[];
  /** Streamed text is held back until a sentence ends or this many characters wait (issue 22's hold-back). */
  holdbackChars: number;
}

export const DEFAULT_HOLDBACK_CHARS = 200;
const DEFAULT_TIMEOUT_MS = 1000;
export const DEFAULT_REMINDERS: Record<string, string> = {
  en: 'Reminder: you are talking to an AI, not a person.',
  zh: '提醒：你正在与人工智能对话，而不是真人。',
};
/** The break reminder's default text (a reminder with `break_after_minutes`). */
export const DEFAULT_BREAK_REMINDERS: Record<string, string> = {
  en: 'You have been chatting for a long time. This is a good moment to take a break.',
  zh: '你已经聊了很长时间了，现在是休息一下的好时候。',
};

/** Which fields each check reads; any other (besides the common ones) is a mistake worth reporting. */
const FIELDS: Record<CheckName, string[]> = {
  regex: ['deny', 'allow', 'keywords'],
  pii: ['categories'],
  injection: ['threshold'],
  moderation: ['url', 'model', 'api_key_env', 'thresholds'],
  webhook: ['url', 'secret_env'],
  json_schema: ['schema'],
  crisis: ['messages', 'notify_url'],
  reminder: ['messages', 'every_turns', 'break_after_minutes'],
};
const COMMON = new Set(['name', 'check', 'stage', 'action', 'on_error', 'timeout_ms']);
const DEFAULT_STAGE: Partial<Record<CheckName, Stage>> = {
  crisis: 'input',
  reminder: 'output',
  json_schema: 'output',
};
const DEFAULT_ACTION: Partial<Record<CheckName, Action>> = {
  crisis: 'refer',
  reminder: 'mutate',
  json_schema: 'block',
};

const ajv = new Ajv({ allErrors: false, strict: false });

/**
 * Builds the configured guardrails, or lists what is wrong with them (the schema is checked already):
 * duplicate names, a field the check does not read, a pattern that does not compile, an action the stage
 * cannot take. `where` prefixes each problem: `COLLOQUY_CONFIG: guardrails[i]` for the routing file, so
 * `colloquy serve` refuses to start with all of them in one message; the admin API answers them as a 400.
 */
export function buildGuardrails(
  entries: GuardrailConfig[],
  options: {
    holdbackChars?: number | undefined;
    env?: Record<string, string | undefined>;
    where?: (i: number) => string;
  } = {},
): { value?: GuardrailSet; problems: string[] } {
  const problems: string[] = [];
  const seen = new Set<string>();
  const set: GuardrailSet = {
    input: [],
    parallel: [],
    output: [],
    structured: [],
    reminders: [],
    holdbackChars: options.holdbackChars ?? DEFAULT_HOLDBACK_CHARS,
  };
  for (const [i, entry] of entries.entries()) {
    const where = options.where?.(i) ?? `COLLOQUY_CONFIG: guardrails[${i}]`;
    if (seen.has(entry.name)) problems.push(`${where}.name: "${entry.name}" is used twice`);
    seen.add(entry.name);
    const built = buildOne(entry, where, options.env ?? process.env);
    if ('problems' in built) problems.push(...built.problems);
    else if (built.guardrail.kind === 'json_schema') set.structured.push(built.guardrail);
    else if (built.guardrail.kind === 'reminder') set.reminders.push(built.guardrail);
    else set[built.guardrail.stage].push(built.guardrail);
  }
  return problems.length ? { problems } : { value: set, problems };
}

/** One entry checked and compiled (exported for the admin API, which validates one guardrail at a time). */
export function buildOne(
  entry: GuardrailConfig,
  where: string,
  env: Record<string, string | undefined> = process.env,
): { guardrail: Guardrail } | { problems: string[] } {
  const problems: string[] = [];
  const kind = entry.check;
  for (const field of Object.keys(entry))
    if (!COMMON.has(field) && !FIELDS[kind].includes(field))
      problems.push(`${where}.${field}: only a ${ownersOf(field)} check has ${field}`);
  const stage = entry.stage ?? DEFAULT_STAGE[kind];
  const action = entry.action ?? DEFAULT_ACTION[kind];
  if (!stage) problems.push(`${where}.stage: required for a ${kind} check`);
  if (!action) problems.push(`${where}.action: required for a ${kind} check`);
  if (stage === 'parallel' && action && !['block', 'flag', 'log'].includes(action))
    problems.push(`${where}.action: a parallel check can block, flag or log, not ${action}`);
  if (action === 'mask' && (kind !== 'pii' || stage !== 'input'))
    problems.push(`${where}.action: mask is for a pii check at the input stage`);
  if (action === 'refer' && kind !== 'crisis') problems.push(`${where}.action: refer is for a crisis check`);
  if (kind === 'crisis' && stage !== 'input') problems.push(`${where}.stage: a crisis check runs on input`);
  if (kind === 'json_schema' && (stage !== 'output' || action !== 'block'))
    problems.push(`${where}: a json_schema check runs at the output stage and blocks`);
  if (kind === 'reminder' && stage !== 'output') problems.push(`${where}.stage: a reminder is output`);
  if (entry.break_after_minutes !== undefined && entry.every_turns !== undefined)
    problems.push(`${where}: a reminder has every_turns or break_after_minutes, not both`);
  let check: Check | undefined;
  let validate: ValidateFunction | undefined;
  switch (kind) {
    case 'regex':
      if (!entry.deny?.length && !entry.keywords?.length)
        problems.push(`${where}: a regex check needs deny or keywords`);
      for (const field of ['deny', 'allow'] as const)
        for (const [j, source] of (entry[field] ?? []).entries()) {
          try {
            compilePattern(source);
          } catch (err) {
            problems.push(
              `${where}.${field}[${j}]: not a valid regular expression: ${(err as Error).message}`,
            );
          }
        }
      if (!problems.length) check = new RegexCheck(entry);
      break;
    case 'pii':
      check = new PiiCheck(entry.categories as PiiCategory[] | undefined);
      break;
    case 'injection':
      check = new InjectionCheck({ threshold: entry.threshold });
      break;
    case 'moderation':
      if (!entry.url && !entry.model)
        problems.push(`${where}.url: a moderation check needs the endpoint's url, or a chat model`);
      else if (!entry.url) {
        if (entry.api_key_env)
          problems.push(`${where}.api_key_env: a chat model is called through the router, with its keys`);
        check = new ChatModerationCheck({ model: entry.model!, thresholds: entry.thresholds });
      } else
        check = new ModerationCheck({
          url: entry.url,
          model: entry.model,
          apiKey: secretFrom(entry.api_key_env, env, `${where}.api_key_env`, problems),
          thresholds: entry.thresholds,
        });
      break;
    case 'webhook':
      if (!entry.url) problems.push(`${where}.url: a webhook check needs a url`);
      else
        check = new WebhookCheck({
          url: entry.url,
          secret: secretFrom(entry.secret_env, env, `${where}.secret_env`, problems),
        });
      break;
    case 'json_schema':
      if (entry.schema)
        try {
          validate = ajv.compile(entry.schema);
        } catch (err) {
          problems.push(`${where}.schema: not a valid JSON Schema: ${(err as Error).message}`);
        }
      check = { find: () => [] };
      break;
    case 'crisis':
      check = new CrisisCheck();
      break;
    case 'reminder':
      check = { find: () => [] };
      break;
  }
  if (problems.length || !check || !stage || !action) return { problems };
  return {
    guardrail: {
      name: entry.name,
      stage,
      action,
      kind,
      check,
      // Safety first for the actions that protect someone; a flag or a log line is not worth an outage.
      failClosed:
        (entry.on_error ?? (action === 'flag' || action === 'log' ? 'open' : 'closed')) === 'closed',
      timeoutMs: entry.timeout_ms ?? DEFAULT_TIMEOUT_MS,
      ...(kind === 'crisis' ? { messages: { ...DEFAULT_REFERRALS, ...entry.messages } } : {}),
      ...(kind === 'reminder'
        ? {
            messages: {
              ...(entry.break_after_minutes ? DEFAULT_BREAK_REMINDERS : DEFAULT_REMINDERS),
              ...entry.messages,
            },
            everyTurns: entry.every_turns ?? 10,
            breakAfterMs: entry.break_after_minutes ? entry.break_after_minutes * 60_000 : undefined,
          }
        : {}),
      notifyUrl: entry.notify_url,
      validate,
    },
  };
}

const ownersOf = (field: string) =>
  Object.entries(FIELDS)
    .filter(([, fields]) => fields.includes(field))
    .map(([check]) => check)
    .join(' or ');

function secretFrom(
  name: string | undefined,
  env: Record<string, string | undefined>,
  where: string,
  problems: string[],
): string | undefined {
  if (!name) return undefined;
  const value = env[name];
  if (!value) problems.push(`${where}: the environment variable ${name} is not set`);
  return value;
}

/** The message of `messages` for a text's language: `zh` when it is mostly Han characters, else `en`. */
export function messageFor(messages: Record<string, string>, language?: string): string {
  return (
    (language && messages[language]) || messages.default || messages.en || Object.values(messages)[0] || ''
  );
}

export function languageOf(text: string): string {
  const han = text.match(/\p{Script=Han}/gu)?.length ?? 0;
  return han > 0 && han * 2 >= text.replace(/\s/g, '').length * 0.3 ? 'zh' : 'en';
}
