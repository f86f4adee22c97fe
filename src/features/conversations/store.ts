import { type Kysely, sql, type Transaction } from 'kysely';
import { newId, nowIso } from '../../core/ids.js';
import type { Db } from '../../db/database.js';
import type { ConversationsTable, Database, MessagesTable } from '../../db/schema.js';
import type { ToolCall } from '../../providers/types.js';
import { MessageTree } from './branches.js';
import { type ConversationTables, withConversationTables } from './tables.js';

export type ConversationRow = ConversationsTable;
export type MessageRow = MessagesTable;
export type Executor = Kysely<Database & ConversationTables> | Transaction<Database & ConversationTables>;

export function toPublicConversation(row: ConversationRow) {
  return {
    id: row.id,
    title: row.title,
    assistant_id: row.assistant_id,
    model: row.model,
    active_leaf_id: row.active_leaf_id,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** A message's stored tool calls (JSON), null when it made none (or the text is not what was stored). */
export function parseToolCalls(json: string | null | undefined): ToolCall[] | null {
  if (!json) return null;
  try {
    const calls = JSON.parse(json) as unknown;
    return Array.isArray(calls) && calls.length > 0 ? (calls as ToolCall[]) : null;
  } catch {
    return null;
  }
}

export function toPublicMessage(row: MessageRow, siblingIds?: string[]) {
  return {
    id: row.id,
    conversation_id: row.conversation_id,
    parent_id: row.parent_id,
    role: row.role,
    content: row.content,
    status: row.status,
    model: row.model,
    error: row.error,
    prompt_tokens: row.prompt_tokens,
    completion_tokens: row.completion_tokens,
    created_at: row.created_at,
    updated_at: row.updated_at,
    tool_calls: parseToolCalls(row.tool_calls),
    ...(siblingIds ? { sibling_ids: siblingIds } : {}),
  };
}
export type PublicMessage = ReturnType<typeof toPublicMessage>;

/** Opaque cursor over (updated_at, id), the order conversation lists are shown in. */
export const encodeCursor = (row: Pick<ConversationRow, 'updated_at' | 'id'>) =>
  Buffer.from(JSON.stringify([row.updated_at, row.id])).toString('base64url');

export function decodeCursor(cursor: string): [string, string] | undefined {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) {
      return value as [string, string];
    }
  } catch {}
  return undefined;
}

/** `%`, `_` and the escape character itself match literally in a LIKE pattern. */
const likePattern = (q: string) => `%${q.toLowerCase().replace(/[!%_]/g, (c) => `!${c}`)}%`;

/** Conversations and their message trees; every read is scoped to the owning user. */
export class ConversationStore {
  readonly db: Kysely<Database & ConversationTables>;

  constructor(db: Db) {
    this.db = withConversationTables(db);
  }

  async create(input: {
    userId: string;
    title: string | null;
    assistantId: string | null;
    model: string | null;
  }): Promise<ConversationRow> {
    const now = nowIso();
    const row: ConversationRow = {
      id: newId('cnv'),
      user_id: input.userId,
      assistant_id: input.assistantId,
      title: input.title,
      model: input.model,
      active_leaf_id: null,
      created_at: now,
      updated_at: now,
    };
    await this.db.insertInto('conversations').values(row).execute();
    return row;
  }

  /** The user's conversation, or undefined (someone else's is indistinguishable from a missing one). */
  findOwned(userId: string, id: string, db: Executor = this.db): Promise<ConversationRow | undefined> {
    return db
      .selectFrom('conversations')
      .selectAll()
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
  }

  /** Newest first by (updated_at, id); `q` matches titles and message text, case-insensitively. */
  list(options: {
    userId: string;
    limit: number;
    after?: [string, string] | undefined;
    q?: string | undefined;
  }) {
    let query = this.db
      .selectFrom('conversations')
      .selectAll()
      .where('user_id', '=', options.userId)
      .orderBy('updated_at', 'desc')
      .orderBy('id', 'desc')
      .limit(options.limit);
    if (options.after) {
      const [updatedAt, id] = options.after;
      query = query.where((eb) =>
        eb.or([
          eb('updated_at', '<', updatedAt),
          eb.and([eb('updated_at', '=', updatedAt), eb('id', '<', id)]),
        ]),
      );
    }
    if (options.q) {
      const pattern = likePattern(options.q);
      query = query.where((eb) =>
        eb.or([
          sql<boolean>`lower(${sql.ref('conversations.title')}) like ${pattern} escape '!'`,
          eb.exists(
            eb
              .selectFrom('messages')
              .select(sql.lit(1).as('one'))
              .whereRef('messages.conversation_id', '=', 'conversations.id')
              .where(sql<boolean>`lower(${sql.ref('messages.content')}) like ${pattern} escape '!'`),
          ),
        ]),
      );
    }
    return query.execute();
  }

  async update(
    id: string,
    changes: Partial<Pick<ConversationRow, 'title' | 'assistant_id' | 'model' | 'active_leaf_id'>>,
    db: Executor = this.db,
  ): Promise<void> {
    await db
      .updateTable('conversations')
      .set({ ...changes, updated_at: nowIso() })
      .where('id', '=', id)
      .execute();
  }

  /** Sets the title only while there is none, so a title the user chose is never overwritten. */
  async setTitleIfUnset(id: string, title: string, db: Executor = this.db): Promise<void> {
    await db
      .updateTable('conversations')
      .set({ title })
      .where('id', '=', id)
      .where('title', 'is', null)
      .execute();
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('conversations').where('id', '=', id).execute();
  }

  findMessage(conversationId: string, id: string, db: Executor = this.db): Promise<MessageRow | undefined> {
    return db
      .selectFrom('messages')
      .selectAll()
      .where('id', '=', id)
      .where('conversation_id', '=', conversationId)
      .executeTakeFirst();
  }

  /** The whole tree's shape: two short columns per message, enough to find branches and siblings. */
  async tree(conversationId: string, db: Executor = this.db): Promise<MessageTree> {
    const nodes = await db
      .selectFrom('messages')
      .select(['id', 'parent_id'])
      .where('conversation_id', '=', conversationId)
      .execute();
    return new MessageTree(nodes);
  }

  async messagesByIds(ids: string[], db: Executor = this.db): Promise<MessageRow[]> {
    if (ids.length === 0) return [];
    const rows: MessageRow[] = [];
    // Bounded IN lists: SQLite allows at most 32766 parameters, PostgreSQL 65535.
    for (let i = 0; i < ids.length; i += 500) {
      rows.push(
        ...(await db
          .selectFrom('messages')
          .selectAll()
          .where('id', 'in', ids.slice(i, i + 500))
          .execute()),
      );
    }
    const byId = new Map(rows.map((r) => [r.id, r]));
    return ids.map((id) => byId.get(id)).filter((r): r is MessageRow => r !== undefined);
  }

  /** Root → leaf messages of a branch, in order. */
  async branch(conversationId: string, leafId: string | null, db: Executor = this.db): Promise<MessageRow[]> {
    if (!leafId) return [];
    const { rows } = await branchQuery(conversationId, leafId).execute(db);
    return rows.map(({ depth: _depth, ...row }) => row);
  }

  async insertMessage(
    db: Executor,
    input: Omit<MessageRow, 'id' | 'created_at' | 'updated_at'> & { id?: string },
  ): Promise<MessageRow> {
    const now = nowIso();
    const row: MessageRow = { ...input, id: input.id ?? newId('msg'), created_at: now, updated_at: now };
    await db.insertInto('messages').values(row).execute();
    return row;
  }
}

/**
 * Root → leaf rows of a branch in one query that walks parent links from the leaf: a primary-key lookup
 * per message of the branch (the plan on SQLite without statistics and on PostgreSQL), where reading the
 * whole tree's shape and then the branch's rows took two queries and grew with every other branch.
 */
export const branchQuery = (conversationId: string, leafId: string) => sql<MessageRow & { depth?: number }>`
  with recursive branch as (
    select messages.*, 0 as depth from messages where id = ${leafId} and conversation_id = ${conversationId}
    union all
    select m.*, b.depth + 1 from branch b join messages m on m.id = b.parent_id
  )
  select * from branch order by depth desc
`;
