import Type from 'typebox';

/** Why a conversation was flagged for the operator (a crisis referral); shown to admins only. */
export const ConversationFlagSchema = Type.Object({
  reason: Type.String({ description: 'crisis' }),
  guardrail: Type.String({ description: 'the guardrail that referred the user' }),
  category: Type.String({ description: 'suicide, self_harm or abuse' }),
  at: Type.String({ description: 'when (the latest referral)' }),
});

export const ConversationSchema = Type.Object(
  {
    id: Type.String(),
    title: Type.Union([Type.String(), Type.Null()]),
    assistant_id: Type.Union([Type.String(), Type.Null()]),
    model: Type.Union([Type.String(), Type.Null()], {
      description: 'the model replies use; null: the assistant’s model, else the default',
    }),
    active_leaf_id: Type.Union([Type.String(), Type.Null()], {
      description: 'the last message of the current branch',
    }),
    created_at: Type.String(),
    updated_at: Type.String(),
    flagged: Type.Optional(
      Type.Union([ConversationFlagSchema, Type.Null()], {
        description:
          'admins only (absent for other callers): set when a crisis referral answered a message; null: not flagged',
      }),
    ),
  },
  { $id: 'Conversation' },
);

export const UsageSchema = Type.Object({
  prompt_tokens: Type.Integer(),
  completion_tokens: Type.Integer(),
  total_tokens: Type.Integer(),
});

export const MessageSchema = Type.Object(
  {
    id: Type.String(),
    conversation_id: Type.String(),
    parent_id: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([
      Type.Literal('system'),
      Type.Literal('user'),
      Type.Literal('assistant'),
      Type.Literal('tool'),
    ]),
    content: Type.String(),
    status: Type.Union(
      [Type.Literal('complete'), Type.Literal('streaming'), Type.Literal('partial'), Type.Literal('error')],
      {
        description:
          'streaming while generated; partial: stopped early (text kept); error: failed before any text',
      },
    ),
    model: Type.Union([Type.String(), Type.Null()]),
    error: Type.Union([Type.String(), Type.Null()]),
    prompt_tokens: Type.Union([Type.Integer(), Type.Null()]),
    completion_tokens: Type.Union([Type.Integer(), Type.Null()]),
    created_at: Type.String(),
    updated_at: Type.String(),
    tool_calls: Type.Union(
      [
        Type.Array(
          Type.Object({
            id: Type.String(),
            type: Type.Literal('function'),
            function: Type.Object({ name: Type.String(), arguments: Type.String() }),
          }),
        ),
        Type.Null(),
      ],
      { description: 'the tool calls an assistant reply made (OpenAI’s shape); null when it made none' },
    ),
    attachments: Type.Optional(
      Type.Array(Type.String(), {
        description: 'ids of the files this user message carried (GET /api/files/{id}); absent when none',
      }),
    ),
    sibling_ids: Type.Optional(
      Type.Array(Type.String(), {
        description: 'ids of every message sharing this one’s parent (itself included), oldest first',
      }),
    ),
  },
  { $id: 'Message' },
);

export const GenerationResultSchema = Type.Object(
  {
    generation_id: Type.String(),
    status: Type.String({ description: 'running, complete, partial or error' }),
    user_message: Type.Union([Type.Ref('Message'), Type.Null()], {
      description: 'the user message this request stored (null for regenerate and continue)',
    }),
    message: Type.Union([Type.Ref('Message'), Type.Null()], {
      description: 'the assistant message (null only when the conversation was deleted meanwhile)',
    }),
    usage: Type.Union([UsageSchema, Type.Null()]),
  },
  { $id: 'GenerationResult' },
);

export const ConversationParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export const MessageParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  messageId: Type.String({ minLength: 1, maxLength: 64 }),
});

const Model = Type.String({ minLength: 1, maxLength: 200 });
const Title = Type.String({ minLength: 1, maxLength: 200 });
const Stream = Type.Boolean({
  default: true,
  description: 'true (default): answer with server-sent events; false: answer JSON once the reply is done',
});
const Content = Type.String({ minLength: 1, maxLength: 200_000 });

export const CreateConversationBody = Type.Object(
  {
    title: Type.Optional(Title),
    assistant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    model: Type.Optional(Model),
  },
  { additionalProperties: false },
);

export const UpdateConversationBody = Type.Object(
  {
    title: Type.Optional(Type.Union([Title, Type.Null()])),
    assistant_id: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()])),
    model: Type.Optional(Type.Union([Model, Type.Null()])),
    active_leaf_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 64,
        description: 'switch the current branch to this message’s',
      }),
    ),
  },
  { additionalProperties: false },
);

export const ListConversationsQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  after: Type.Optional(Type.String({ maxLength: 256, description: 'next_cursor of the previous page' })),
  q: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'search titles and messages' })),
});

export const ListMessagesQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
  after: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
  leaf: Type.Optional(
    Type.String({
      maxLength: 64,
      description:
        'show the branch through this message (down to its newest descendant) instead of the active one',
    }),
  ),
});

/** Files to send with the message (issue 24): ids from POST /api/files. */
export const Attachments = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
  maxItems: 10,
  description:
    'ids of your uploaded files (POST /api/files): images go to the model as image parts (vision models only, 400 otherwise), documents as their extracted text',
});

/**
 * Per-request settings for the reply (the console's parameter panel): they win over the assistant's for this
 * reply only and are not stored. Null is refused like any other wrong type (omit a field to keep the default).
 */
const ReplySettings = {
  temperature: Type.Optional(
    Type.Number({ minimum: 0, maximum: 2, description: 'sampling temperature for this reply, 0 to 2' }),
  ),
  max_tokens: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'the most tokens this reply may have' }),
  ),
  system_prompt: Type.Optional(
    Type.String({
      maxLength: 32_000,
      description: "the system prompt for this reply instead of the assistant's (an empty string sends none)",
    }),
  ),
};

export const SendMessageBody = Type.Object(
  {
    content: Content,
    attachments: Type.Optional(Attachments),
    parent_id: Type.Optional(
      Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()], {
        description: 'the message this one answers; omitted: the active leaf; null: start a new root branch',
      }),
    ),
    model: Type.Optional(Model),
    stream: Type.Optional(Stream),
    ...ReplySettings,
  },
  { additionalProperties: false },
);

export const EditMessageBody = Type.Object(
  {
    content: Content,
    attachments: Type.Optional(Attachments),
    model: Type.Optional(Model),
    stream: Type.Optional(Stream),
    ...ReplySettings,
  },
  { additionalProperties: false },
);

/** Regenerate and continue: the body is optional. */
export const GenerateBody = Type.Object(
  { model: Type.Optional(Model), stream: Type.Optional(Stream), ...ReplySettings },
  { additionalProperties: false },
);

/** The reply settings of a request body (what the service takes). */
export interface ReplyOptions {
  temperature?: number | undefined;
  max_tokens?: number | undefined;
  system_prompt?: string | undefined;
}
export const replyOptions = (b: ReplyOptions): ReplyOptions => ({
  ...(b.temperature !== undefined ? { temperature: b.temperature } : {}),
  ...(b.max_tokens !== undefined ? { max_tokens: b.max_tokens } : {}),
  ...(b.system_prompt !== undefined ? { system_prompt: b.system_prompt } : {}),
});

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      description: 'a retry with the same key returns the first request’s result instead of generating again',
    }),
  ),
});

export const GenerationParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const GenerationEventsHeaders = Type.Object({
  'last-event-id': Type.Optional(Type.String({ maxLength: 20, description: 'resume after this event' })),
});
