import type { Kysely, Selectable } from 'kysely';
import type { Db } from '../../db/database.js';

/** Tables added by migration 0016-files, typed here so the shared schema file stays untouched. */
export interface FilesTable {
  id: string;
  user_id: string;
  filename: string;
  extension: string;
  media_type: string;
  kind: 'image' | 'document';
  bytes: number | string | bigint;
  sha256: string;
  storage_key: string;
  width: number | null;
  height: number | null;
  text: string | null;
  text_chars: number | null;
  text_truncated: number;
  conversation_id: string | null;
  created_at: string;
}

export interface MessageFilesTable {
  message_id: string;
  file_id: string;
  position: number;
}

// A type alias, not an interface: Kysely's withTables needs an index-signature-compatible record.
export type FileTables = { files: FilesTable; message_files: MessageFilesTable };
export type FileRow = Selectable<FilesTable>;

/** The columns every listing needs: never the extracted text, which can be a megabyte. */
const META = [
  'id',
  'user_id',
  'filename',
  'extension',
  'media_type',
  'kind',
  'bytes',
  'sha256',
  'storage_key',
  'width',
  'height',
  'text_chars',
  'text_truncated',
  'conversation_id',
  'created_at',
] as const;
export type FileMeta = Omit<FileRow, 'text'>;

export class FileStore {
  readonly db;
  constructor(db: Db) {
    this.db = db.withTables<FileTables>();
  }

  async insert(row: FileRow) {
    await this.db.insertInto('files').values(row).execute();
  }

  async findOwned(userId: string, id: string): Promise<FileMeta | undefined> {
    return this.db
      .selectFrom('files')
      .select(META)
      .where('id', '=', id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
  }

  async text(id: string): Promise<string | null> {
    const row = await this.db.selectFrom('files').select('text').where('id', '=', id).executeTakeFirst();
    return row?.text ?? null;
  }

  async list(userId: string, limit: number, before?: string): Promise<FileMeta[]> {
    let query = this.db
      .selectFrom('files')
      .select(META)
      .where('user_id', '=', userId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit);
    if (before) query = query.where('id', '<', before);
    return query.execute();
  }

  async usedBytes(userId: string): Promise<number> {
    const row = await this.db
      .selectFrom('files')
      .select((eb) => eb.fn.sum<number | string | null>('bytes').as('total'))
      .where('user_id', '=', userId)
      .executeTakeFirst();
    return Number(row?.total ?? 0);
  }

  async delete(id: string) {
    await this.db.deleteFrom('message_files').where('file_id', '=', id).execute();
    await this.db.deleteFrom('files').where('id', '=', id).execute();
  }

  /** Files whose conversation no longer exists (deleted by a user or by retention), a bounded batch. */
  async detached(limit: number): Promise<FileMeta[]> {
    return this.db
      .selectFrom('files')
      .select(META)
      .where('conversation_id', 'is not', null)
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('conversations')
              .select('conversations.id')
              .whereRef('conversations.id', '=', 'files.conversation_id'),
          ),
        ),
      )
      .limit(limit)
      .execute();
  }

  /** Records which files a message carried, and ties each file still unattached to its conversation. */
  // biome-ignore lint/suspicious/noExplicitAny: a transaction of any feature's table set
  async link(db: Kysely<any>, messageId: string, conversationId: string, fileIds: string[]) {
    if (fileIds.length === 0) return;
    const tables = db as unknown as Kysely<FileTables>;
    await tables
      .insertInto('message_files')
      .values(fileIds.map((file_id, position) => ({ message_id: messageId, file_id, position })))
      .execute();
    await tables
      .updateTable('files')
      .set({ conversation_id: conversationId })
      .where('id', 'in', fileIds)
      .where('conversation_id', 'is', null)
      .execute();
  }

  /** The files of each message, in the order they were attached. */
  async filesOfMessages(messageIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (messageIds.length === 0) return out;
    const rows = await this.db
      .selectFrom('message_files')
      .select(['message_id', 'file_id'])
      .where('message_id', 'in', messageIds)
      .orderBy('message_id')
      .orderBy('position')
      .execute();
    for (const row of rows) {
      const list = out.get(row.message_id) ?? [];
      list.push(row.file_id);
      out.set(row.message_id, list);
    }
    return out;
  }

  async byIds(ids: string[]): Promise<FileRow[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('files').selectAll().where('id', 'in', ids).execute();
  }
}
