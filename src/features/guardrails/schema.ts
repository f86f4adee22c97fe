import Type, { type Static } from 'typebox';

/**
 * One guardrail, as written in the routing file's `guardrails:` list and as stored through the admin API
 * (issue 22). The smallest configuration of the issue is a contract:
 *
 *   guardrails:
 *     - name: pii
 *       check: pii
 *       stage: input
 *       action: redact
 *     - name: house-rules
 *       check: regex
 *       deny: ["(?i)forbidden phrase"]
 *       stage: output
 *       action: block
 */
const literals = (description: string) => ({ description });
const STAGE = literals('input, parallel or output');
const ACTION = literals('block, redact, mutate, mask, refer, flag or log');
const ON_ERROR = literals('open or closed');
const CHECK = literals('regex, pii, injection, moderation, webhook, json_schema, crisis or reminder');
const CATEGORY = literals('email, phone, card, iban, ip or secret');

export const CHECKS = [
  'regex',
  'pii',
  'injection',
  'moderation',
  'webhook',
  'json_schema',
  'crisis',
  'reminder',
] as const;
export const STAGES = ['input', 'parallel', 'output'] as const;
export const ACTIONS = ['block', 'redact', 'mutate', 'mask', 'refer', 'flag', 'log'] as const;

const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  pattern: '^https?://',
  description: 'an http(s) URL',
});
const EnvName = Type.String({
  pattern: '^GUARDRAIL_[A-Z0-9_]+$',
  description: 'the name of a GUARDRAIL_* environment variable holding the secret (never the secret itself)',
});

/** Everything but the name: what a check does, where and how. */
export const GuardrailRuleProperties = {
  check: Type.Union([
    Type.Literal('regex', CHECK),
    Type.Literal('pii', CHECK),
    Type.Literal('injection', CHECK),
    Type.Literal('moderation', CHECK),
    Type.Literal('webhook', CHECK),
    Type.Literal('json_schema', CHECK),
    Type.Literal('crisis', CHECK),
    Type.Literal('reminder', CHECK),
  ]),
  stage: Type.Optional(
    Type.Union(
      [Type.Literal('input', STAGE), Type.Literal('parallel', STAGE), Type.Literal('output', STAGE)],
      {
        description: 'optional for crisis (input), reminder and json_schema (output)',
      },
    ),
  ),
  action: Type.Optional(
    Type.Union(
      [
        Type.Literal('block', ACTION),
        Type.Literal('redact', ACTION),
        Type.Literal('mutate', ACTION),
        Type.Literal('mask', ACTION),
        Type.Literal('refer', ACTION),
        Type.Literal('flag', ACTION),
        Type.Literal('log', ACTION),
      ],
      { description: 'optional for crisis (refer), reminder (mutate) and json_schema (block)' },
    ),
  ),
  deny: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), { description: 'a list of regular expressions' }),
  ),
  allow: Type.Optional(
    Type.Array(Type.String({ minLength: 1 }), { description: 'a list of regular expressions' }),
  ),
  keywords: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'a list of words' })),
  categories: Type.Optional(
    Type.Array(
      Type.Union([
        Type.Literal('email', CATEGORY),
        Type.Literal('phone', CATEGORY),
        Type.Literal('card', CATEGORY),
        Type.Literal('iban', CATEGORY),
        Type.Literal('ip', CATEGORY),
        Type.Literal('secret', CATEGORY),
      ]),
    ),
  ),
  on_error: Type.Optional(Type.Union([Type.Literal('open', ON_ERROR), Type.Literal('closed', ON_ERROR)])),
  timeout_ms: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000, description: '1 to 60000 ms' })),
  // injection
  threshold: Type.Optional(
    Type.Number({ minimum: 0, maximum: 100, description: 'injection: the score that triggers (default 1)' }),
  ),
  // moderation, webhook
  url: Type.Optional(Url),
  model: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'moderation: the model' })),
  api_key_env: Type.Optional(EnvName),
  thresholds: Type.Optional(
    Type.Record(Type.String({ minLength: 1 }), Type.Number({ minimum: 0, maximum: 1 }), {
      description: 'moderation: category → score at or above which it triggers; without: the flagged ones',
    }),
  ),
  secret_env: Type.Optional(EnvName),
  // json_schema
  schema: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), {
      description: "json_schema: a JSON Schema; without it the request's response_format schema",
    }),
  ),
  // crisis, reminder
  messages: Type.Optional(
    Type.Record(Type.String({ pattern: '^(default|[a-z]{2})$' }), Type.String({ minLength: 1 }), {
      description:
        'crisis: the referral per language (en, zh, …, default); reminder: the reminder per language',
    }),
  ),
  every_turns: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1000, description: 'reminder: every N user turns (default 10)' }),
  ),
  break_after_minutes: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 1440,
      description:
        'reminder: a break reminder once a session has lasted this long, and again each time as long again (minor mode: 180)',
    }),
  ),
  notify_url: Type.Optional(Url),
};

export const GuardrailName = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_.-]+$',
  description: 'a name (letters, digits, _ . -)',
});

export const GuardrailSchema = Type.Object(
  { name: GuardrailName, ...GuardrailRuleProperties },
  { additionalProperties: false },
);

export type GuardrailConfig = Static<typeof GuardrailSchema>;
export type Stage = (typeof STAGES)[number];
export type Action = (typeof ACTIONS)[number];
export type CheckName = (typeof CHECKS)[number];
