import Type, { type Static } from 'typebox';

/** Sampling parameters an assistant sends with every request; anything unset is left to the model. */
export const AssistantParams = Type.Object(
  {
    temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
    top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    max_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    presence_penalty: Type.Optional(Type.Number({ minimum: -2, maximum: 2 })),
    frequency_penalty: Type.Optional(Type.Number({ minimum: -2, maximum: 2 })),
    // The array first: request coercion would otherwise turn a one-element list into a string.
    stop: Type.Optional(
      Type.Union([
        Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 4 }),
        Type.String({ minLength: 1, maxLength: 200 }),
      ]),
    ),
    seed: Type.Optional(Type.Integer()),
    // Not sent to the model: replies to the same conversation state are served from the response cache.
    cache_responses: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type AssistantParams = Static<typeof AssistantParams>;

export const AssistantSchema = Type.Object(
  {
    id: Type.String(),
    owner_id: Type.Union([Type.String(), Type.Null()], {
      description: 'null for a shared assistant (managed by admins)',
    }),
    shared: Type.Boolean(),
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    system_prompt: Type.String(),
    model: Type.String(),
    params: AssistantParams,
    created_at: Type.String(),
    updated_at: Type.String(),
  },
  { $id: 'Assistant' },
);

const Name = Type.String({ minLength: 1, maxLength: 100 });
const Description = Type.Union([Type.String({ maxLength: 2000 }), Type.Null()]);
const SystemPrompt = Type.String({ maxLength: 100_000 });
const Model = Type.String({ minLength: 1, maxLength: 200 });

export const CreateAssistantBody = Type.Object(
  {
    name: Name,
    description: Type.Optional(Description),
    system_prompt: Type.Optional(SystemPrompt),
    model: Model,
    params: Type.Optional(AssistantParams),
    shared: Type.Optional(
      Type.Boolean({ description: 'admin only: visible to every user; otherwise private to you' }),
    ),
  },
  { additionalProperties: false },
);

export const UpdateAssistantBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Description),
    system_prompt: Type.Optional(SystemPrompt),
    model: Type.Optional(Model),
    params: Type.Optional(AssistantParams),
  },
  { additionalProperties: false },
);
