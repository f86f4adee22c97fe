import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import Type, { type TSchema } from 'typebox';
import { Compile } from 'typebox/compile';

const Nullable = <T extends Type.TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const ContentPart = Type.Object({ type: Type.String({ minLength: 1 }) }, { additionalProperties: true });

const Message = Type.Object(
  {
    role: Type.Union(
      ['system', 'developer', 'user', 'assistant', 'tool', 'function'].map((r) => Type.Literal(r)),
    ),
    content: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(ContentPart)]))),
    name: Type.Optional(Type.String()),
    tool_call_id: Type.Optional(Type.String()),
    tool_calls: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
  },
  { additionalProperties: true },
);

/**
 * The fields Colloquy reads are checked here; everything else is allowed and forwarded untouched to
 * OpenAI-compatible upstreams (new OpenAI parameters work without a Colloquy release).
 */
/** The error answers of the OpenAI-compatible model endpoints (chat, completions, embeddings, responses). */
export const openAiErrors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  404: Type.Ref('Error'),
  429: Type.Ref('Error'),
  502: Type.Ref('Error'),
  503: Type.Ref('Error'),
  504: Type.Ref('Error'),
};

export const ChatCompletionBody = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 256 }),
    messages: Type.Array(Message, { minItems: 1, maxItems: 10_000 }),
    stream: Type.Optional(Nullable(Type.Boolean())),
    stream_options: Type.Optional(
      Nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: true })),
    ),
    temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
    top_p: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 1 }))),
    max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
    max_completion_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
    n: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 128 }))),
    seed: Type.Optional(Nullable(Type.Integer())),
    stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]))),
    tools: Type.Optional(Type.Array(Type.Object({ type: Type.String() }, { additionalProperties: true }))),
    tool_choice: Type.Optional(Type.Unknown()),
    response_format: Type.Optional(Type.Unknown()),
    user: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: true },
);

export const ChatCompletionResponse = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(Type.Object({}, { additionalProperties: true })),
    usage: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: true },
);

export const ModelObject = Type.Object({
  id: Type.String(),
  object: Type.Literal('model'),
  created: Type.Integer(),
  owned_by: Type.String(),
  /** Colloquy's extension (issue 20): the endpoints that serve the model; OpenAI clients ignore it. */
  endpoints: Type.Optional(
    Type.Array(Type.String(), {
      description:
        'Colloquy endpoints serving this model: chat.completions, messages, responses, embeddings, completions',
    }),
  ),
});

/**
 * Validates a body without changing it. Fastify's default validator coerces types (`coerceTypes: 'array'`),
 * which would forward `temperature: null` as 0, `stop: ['x']` as 'x', `content: null` as '', and reject a
 * one-part content array; the body is relayed to the upstream as the client sent it, so it must stay intact.
 * Errors keep Ajv's shape (`missingProperty`), which the error handler turns into `param`.
 */
export const validateWithoutCoercion: FastifySchemaCompiler<TSchema> = ({ schema }) => {
  const validator = Compile(schema);
  return (value: unknown) => {
    if (validator.Check(value)) return { value };
    const errors = validator.Errors(value).map((error): FastifySchemaValidationError => {
      const required = (error.params as { requiredProperties?: string[] }).requiredProperties;
      return required?.length ? { ...error, params: { missingProperty: required[0] } } : error;
    });
    return { error: errors };
  };
};
