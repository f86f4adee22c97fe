import Type from 'typebox';

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
export const Content = Type.String({ minLength: 1, maxLength: 200_000 });

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

export const SendMessageBody = Type.Object(
  {
    content: Content,
    parent_id: Type.Optional(
      Type.Union([Type.String({ minLength: 1, maxLength: 64 }), Type.Null()], {
        description: 'the message this one answers; omitted: the active leaf; null: start a new root branch',
      }),
    ),
    model: Type.Optional(Model),
    stream: Type.Optional(Stream),
  },
  { additionalProperties: false },
);

export const EditMessageBody = Type.Object(
  { content: Content, model: Type.Optional(Model), stream: Type.Optional(Stream) },
  { additionalProperties: false },
);

/** Regenerate and continue: the body is optional. */
export const GenerateBody = Type.Object(
  { model: Type.Optional(Model), stream: Type.Optional(Stream) },
  { additionalProperties: false },
);

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
