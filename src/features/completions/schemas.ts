import Type from 'typebox';

const Nullable = <T extends Type.TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/**
 * Legacy text completions (https://platform.openai.com/docs/api-reference/completions/create): the fields
 * Colloquy reads are checked; the rest (suffix, echo, logprobs, best_of, logit_bias…) goes to the upstream
 * as sent.
 */
export const CompletionBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 256 }),
    prompt: Type.Union([
      Type.String(),
      Type.Array(Type.String(), { minItems: 1, maxItems: 2048 }),
      Type.Array(Type.Integer(), { minItems: 1 }),
      Type.Array(Type.Array(Type.Integer()), { minItems: 1, maxItems: 2048 }),
    ]),
    suffix: Type.Optional(Nullable(Type.String())),
    max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 0 }))),
    temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
    top_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
    n: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 128 }))),
    stream: Type.Optional(Nullable(Type.Boolean())),
    stream_options: Type.Optional(
      Nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: true })),
    ),
    stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]))),
    user: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

export type CompletionRequest = Type.Static<typeof CompletionBody> & { [key: string]: unknown };

export const CompletionResponse = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('text_completion'),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(
      Type.Object(
        {
          text: Type.String(),
          index: Type.Integer(),
          logprobs: Type.Unknown(),
          finish_reason: Nullable(Type.String()),
        },
        { additionalProperties: true },
      ),
    ),
    usage: Type.Optional(
      Type.Object(
        { prompt_tokens: Type.Integer(), completion_tokens: Type.Integer(), total_tokens: Type.Integer() },
        { additionalProperties: true },
      ),
    ),
  },
  { additionalProperties: true },
);
