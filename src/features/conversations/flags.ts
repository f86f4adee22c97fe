import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import { nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import { onConflictUpdate, proposed } from '../../db/portable.js';
import { bearerSecurity } from '../../plugins/auth.js';
import { ConversationFlagSchema } from './schemas.js';
import { decodeCursor } from './store.js';

export interface ConversationFlagsTable {
  conversation_id: string;
  reason: string;
  guardrail: string;
  category: string;
  flagged_at: string;
}

/** The table of migration 0019, typed here so the shared schema file stays untouched. */
const withFlagTables = (db: Db) => db.withTables<{ conversation_flags: ConversationFlagsTable }>();

/** What the conversation API shows an admin: why, by which guardrail and when (never the text). */
export interface ConversationFlag {
  reason: string;
  guardrail: string;
  category: string;
  at: string;
}

const toFlag = (row: ConversationFlagsTable): ConversationFlag => ({
  reason: row.reason,
  guardrail: row.guardrail,
  category: row.category,
  at: row.flagged_at,
});

/**
 * Flagged conversations (issue 22: a crisis referral flags the conversation for the operator). One row per
 * conversation, the latest referral's; deleted with the conversation.
 */
export class ConversationFlags {
  readonly #db: ReturnType<typeof withFlagTables>;

  constructor(db: Db) {
    this.#db = withFlagTables(db);
  }

  async flag(
    conversationId: string,
    flag: { reason: string; guardrail: string; category: string },
    at = nowIso(),
  ) {
    const row: ConversationFlagsTable = { conversation_id: conversationId, ...flag, flagged_at: at };
    const insert = this.#db.insertInto('conversation_flags').values(row);
    await onConflictUpdate(this.#db, insert, ['conversation_id'], {
      reason: proposed(this.#db, 'reason'),
      guardrail: proposed(this.#db, 'guardrail'),
      category: proposed(this.#db, 'category'),
      flagged_at: proposed(this.#db, 'flagged_at'),
    }).execute();
  }

  /** The flags of these conversations (absent: not flagged). */
  async of(conversationIds: string[]): Promise<Map<string, ConversationFlag>> {
    const out = new Map<string, ConversationFlag>();
    // Bounded IN lists, as for messages: a page of conversations is at most a few hundred ids.
    for (let i = 0; i < conversationIds.length; i += 500) {
      const rows = await this.#db
        .selectFrom('conversation_flags')
        .selectAll()
        .where('conversation_id', 'in', conversationIds.slice(i, i + 500))
        .execute();
      for (const row of rows) out.set(row.conversation_id, toFlag(row));
    }
    return out;
  }

  /** Flagged conversations of every user, most recently flagged first, by (flagged_at, id). */
  async list(options: { limit: number; after?: [string, string] | undefined }) {
    let query = this.#db
      .selectFrom('conversation_flags')
      .innerJoin('conversations', 'conversations.id', 'conversation_flags.conversation_id')
      .select([
        'conversations.id',
        'conversations.user_id',
        'conversations.assistant_id',
        'conversations.created_at',
        'conversations.updated_at',
        'conversation_flags.reason',
        'conversation_flags.guardrail',
        'conversation_flags.category',
        'conversation_flags.flagged_at',
      ])
      .orderBy('conversation_flags.flagged_at', 'desc')
      .orderBy('conversation_flags.conversation_id', 'desc')
      .limit(options.limit);
    if (options.after) {
      const [at, id] = options.after;
      query = query.where((eb) =>
        eb.or([
          eb('conversation_flags.flagged_at', '<', at),
          eb.and([
            eb('conversation_flags.flagged_at', '=', at),
            eb('conversation_flags.conversation_id', '<', id),
          ]),
        ]),
      );
    }
    const rows = await query.execute();
    return rows.map((r) => ({
      id: r.id,
      user_id: r.user_id,
      assistant_id: r.assistant_id,
      created_at: r.created_at,
      updated_at: r.updated_at,
      flagged: { reason: r.reason, guardrail: r.guardrail, category: r.category, at: r.flagged_at },
    }));
  }
}

const FlaggedConversation = Type.Object({
  id: Type.String(),
  user_id: Type.String(),
  assistant_id: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  updated_at: Type.String(),
  flagged: ConversationFlagSchema,
});

/**
 * `GET /api/admin/conversations?flagged=true`: the operator's list of conversations a crisis referral flagged,
 * every user's, most recently flagged first. Only flagged ones: other conversations stay their users' own; and
 * no title (it is the user's first message, often the very statement that was referred).
 */
export async function adminConversationRoutes(fastify: FastifyInstance, deps: { flags: ConversationFlags }) {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/admin/conversations',
    {
      preHandler: app.requireAdmin,
      schema: {
        tags: ['admin'],
        security: bearerSecurity,
        summary:
          'Conversations flagged by a crisis referral, every user’s, most recently flagged first (admin)',
        querystring: Type.Object({
          flagged: Type.Boolean({ description: 'true (the only list: unflagged conversations are private)' }),
          limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
          after: Type.Optional(Type.String({ description: 'next_cursor of the previous page' })),
        }),
        response: {
          200: Type.Object({
            data: Type.Array(FlaggedConversation),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          400: Type.Ref('Error'),
          401: Type.Ref('Error'),
          403: Type.Ref('Error'),
        },
      },
    },
    async (request) => {
      const { flagged, limit, after } = request.query;
      if (!flagged)
        throw new AppError('invalid_request', 'only flagged conversations are listed: pass flagged=true', {
          param: 'flagged',
        });
      const cursor = after ? decodeCursor(after) : undefined;
      if (after && !cursor) throw new AppError('invalid_request', 'invalid cursor', { param: 'after' });
      const rows = await deps.flags.list({ limit: limit + 1, after: cursor });
      const more = rows.length > limit;
      const kept = more ? rows.slice(0, limit) : rows;
      const last = kept.at(-1);
      return {
        data: kept,
        next_cursor:
          more && last ? Buffer.from(JSON.stringify([last.flagged.at, last.id])).toString('base64url') : null,
      };
    },
  );
}
