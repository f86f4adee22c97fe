import Type from 'typebox';
import type { FileMeta } from './store.js';

export const FileSchema = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('file'),
    filename: Type.String({
      description: 'the uploaded name, cleaned of path separators and control characters',
    }),
    bytes: Type.Integer(),
    media_type: Type.String({ description: 'what the content is, checked by its magic bytes' }),
    kind: Type.Union([Type.Literal('image'), Type.Literal('document')]),
    width: Type.Union([Type.Integer(), Type.Null()]),
    height: Type.Union([Type.Integer(), Type.Null()]),
    text_chars: Type.Union([Type.Integer(), Type.Null()], {
      description: 'documents: characters of extracted text (before any cut)',
    }),
    text_truncated: Type.Boolean({
      description: 'documents: the extracted text was cut at 1,000,000 characters',
    }),
    conversation_id: Type.Union([Type.String(), Type.Null()], {
      description: 'the conversation that first used the file; the file is deleted with it',
    }),
    sha256: Type.String(),
    created_at: Type.String(),
  },
  { $id: 'File' },
);

export const FileParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const ListFilesQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
  after: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
});

export const FileTextSchema = Type.Object({
  id: Type.String(),
  text: Type.String(),
  text_chars: Type.Integer(),
  text_truncated: Type.Boolean(),
});

export function toPublicFile(row: FileMeta) {
  return {
    id: row.id,
    object: 'file' as const,
    filename: row.filename,
    bytes: Number(row.bytes),
    media_type: row.media_type,
    kind: row.kind,
    width: row.width,
    height: row.height,
    text_chars: row.text_chars,
    text_truncated: Boolean(row.text_truncated),
    conversation_id: row.conversation_id,
    sha256: row.sha256,
    created_at: row.created_at,
  };
}
