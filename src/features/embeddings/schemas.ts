import Type from 'typebox';

/**
 * POST /v1/embeddings as OpenAI documents it (https://platform.openai.com/docs/api-reference/embeddings/create):
 * a text, a list of texts, a list of token ids or a list of token-id lists. Empty inputs are refused here,
 * as OpenAI does; other fields are forwarded untouched to OpenAI-compatible upstreams.
 */
const Text = Type.String({ minLength: 1 });
const TokenIds = Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 });

export const EmbeddingBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 256 }),
    input: Type.Union([
      Text,
      Type.Array(Text, { minItems: 1, maxItems: 2048 }),
      TokenIds,
      Type.Array(TokenIds, { minItems: 1, maxItems: 2048 }),
    ]),
    encoding_format: Type.Optional(Type.Union([Type.Literal('float'), Type.Literal('base64')])),
    dimensions: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_536 })),
    user: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

export const EmbeddingResponseSchema = Type.Object(
  {
    object: Type.Literal('list'),
    data: Type.Array(
      Type.Object({
        object: Type.Literal('embedding'),
        index: Type.Integer(),
        embedding: Type.Union([Type.Array(Type.Number()), Type.String()]),
      }),
    ),
    model: Type.String(),
    usage: Type.Object({ prompt_tokens: Type.Integer(), total_tokens: Type.Integer() }),
  },
  { additionalProperties: true },
);
