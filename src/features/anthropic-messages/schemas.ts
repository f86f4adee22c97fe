/**
 * The Messages API's request, as Anthropic documents it (https://docs.anthropic.com/en/api/messages). The
 * fields Colloquy reads are checked; everything else is allowed, since a request routed to an Anthropic
 * deployment is forwarded untouched (new Anthropic parameters work without a Colloquy release).
 */
import Type, { type Static } from 'typebox';

const Block = Type.Object({ type: Type.String({ minLength: 1 }) }, { additionalProperties: true });
const Content = Type.Union([Type.String(), Type.Array(Block)]);

const MessageParam = Type.Object(
  { role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]), content: Content },
  { additionalProperties: true },
);

const Tool = Type.Object({ name: Type.String({ minLength: 1 }) }, { additionalProperties: true });

const ToolChoice = Type.Object(
  {
    type: Type.Union([Type.Literal('auto'), Type.Literal('any'), Type.Literal('tool'), Type.Literal('none')]),
    name: Type.Optional(Type.String()),
    disable_parallel_tool_use: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);

const Thinking = Type.Object(
  {
    type: Type.Union([Type.Literal('enabled'), Type.Literal('disabled')]),
    budget_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: true },
);

const common = {
  model: Type.String({ minLength: 1, maxLength: 256 }),
  messages: Type.Array(MessageParam, { minItems: 1, maxItems: 10_000 }),
  system: Type.Optional(Content),
  tools: Type.Optional(Type.Array(Tool)),
  tool_choice: Type.Optional(ToolChoice),
  thinking: Type.Optional(Thinking),
};

export const MessagesBody = Type.Object(
  {
    ...common,
    max_tokens: Type.Integer({ minimum: 1 }),
    stream: Type.Optional(Type.Boolean()),
    stop_sequences: Type.Optional(Type.Array(Type.String())),
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    top_k: Type.Optional(Type.Integer({ minimum: 0 })),
    metadata: Type.Optional(
      Type.Object(
        { user_id: Type.Optional(Type.String({ maxLength: 256 })) },
        { additionalProperties: true },
      ),
    ),
  },
  { additionalProperties: true },
);
export type MessagesRequest = Static<typeof MessagesBody>;

export const CountTokensBody = Type.Object(common, { additionalProperties: true });
export type CountTokensRequest = Static<typeof CountTokensBody>;

export const MessageResponse = Type.Object(
  {
    id: Type.String(),
    type: Type.Literal('message'),
    role: Type.Literal('assistant'),
    model: Type.String(),
    content: Type.Array(Type.Object({}, { additionalProperties: true })),
    stop_reason: Type.Union([Type.String(), Type.Null()]),
    stop_sequence: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    usage: Type.Object({}, { additionalProperties: true }),
  },
  { additionalProperties: true },
);

export const CountTokensResponse = Type.Object({ input_tokens: Type.Integer() });

export const AnthropicErrorSchema = Type.Object(
  {
    type: Type.Literal('error'),
    error: Type.Object({ type: Type.String(), message: Type.String() }),
    request_id: Type.Optional(Type.String()),
  },
  { $id: 'AnthropicError', description: "An error, in Anthropic's error shape" },
);
