import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { AppError } from '../../core/errors.js';
import { bearerSecurity, principalOf } from '../../plugins/auth.js';
import { FileParams, FileSchema, FileTextSchema, ListFilesQuery, toPublicFile } from './schemas.js';
import type { FilesService } from './service.js';

const errors = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  404: Type.Ref('Error'),
};

/** Files belong to user accounts; the master key has none. */
function ownerOf(request: FastifyRequest): string {
  const { userId } = principalOf(request);
  if (!userId)
    throw new AppError('invalid_request', 'the master key has no user account: files belong to users');
  return userId;
}

/**
 * `Content-Disposition: attachment` with an ASCII fallback and the UTF-8 name (RFC 6266, RFC 8187): the
 * browser downloads, never renders; quotes and backslashes cannot break out of the header.
 */
export function contentDisposition(filename: string) {
  const ascii = filename.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** Uploads (multipart, field `file`), listing, metadata, download, extracted text and deletion. */
export async function filesRoutes(
  fastify: FastifyInstance,
  deps: { files: FilesService; maxUploadBytes: number },
) {
  // Registered in this plugin only: no other route accepts multipart bodies.
  await fastify.register(multipart, {
    limits: {
      fileSize: deps.maxUploadBytes,
      files: 1,
      fields: 0,
      parts: 2,
      fieldNameSize: 100,
      headerPairs: 20,
    },
  });
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const common = { tags: ['files'], security: bearerSecurity };
  const { files } = deps;

  app.post(
    '/api/files',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary:
          'Upload a file (multipart/form-data, field `file`): checked by content, images prepared for models, documents converted to text',
        consumes: ['multipart/form-data'],
        response: {
          201: Type.Ref('File'),
          ...errors,
          413: Type.Ref('Error'),
          415: Type.Ref('Error'),
          422: Type.Ref('Error'),
        },
      },
    },
    async (request, reply) => {
      const userId = ownerOf(request);
      if (!request.isMultipart())
        throw new AppError('unsupported_media_type', 'send the file as multipart/form-data, field `file`');
      let part: Awaited<ReturnType<FastifyRequest['file']>>;
      try {
        part = await request.file();
      } catch (err) {
        throw new AppError('invalid_request', 'the multipart body is malformed', {
          param: 'file',
          cause: err,
        });
      }
      if (!part)
        throw new AppError('invalid_request', 'no file: send one in the multipart field `file`', {
          param: 'file',
        });
      if (part.fieldname !== 'file') {
        part.file.resume();
        throw new AppError(
          'invalid_request',
          `the file must be in the field \`file\`, not \`${part.fieldname}\``,
          {
            param: 'file',
          },
        );
      }
      const meta = await files.upload(userId, part.filename, part.file);
      reply.code(201);
      return toPublicFile(meta);
    },
  );

  app.get(
    '/api/files',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Your files, newest first',
        querystring: ListFilesQuery,
        response: {
          200: Type.Object({
            data: Type.Array(Type.Ref('File')),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (request) => {
      const rows = await files.list(ownerOf(request), request.query.limit + 1, request.query.after);
      const more = rows.length > request.query.limit;
      const page = rows.slice(0, request.query.limit);
      return { data: page.map(toPublicFile), next_cursor: more ? (page.at(-1)?.id ?? null) : null };
    },
  );

  app.get(
    '/api/files/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'A file’s metadata',
        params: FileParams,
        response: { 200: Type.Ref('File'), ...errors },
      },
    },
    async (request) => toPublicFile(await files.get(ownerOf(request), request.params.id)),
  );

  app.get(
    '/api/files/:id/content',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'The file’s bytes, always as a download (Content-Disposition: attachment, nosniff)',
        params: FileParams,
        response: { 200: Type.String({ description: 'the bytes' }), ...errors },
      },
    },
    async (request, reply) => {
      const { meta, body } = await files.content(ownerOf(request), request.params.id);
      // Never rendered by a browser: a download, the declared type only (nosniff), scripts sandboxed off.
      reply
        .header('content-type', meta.media_type)
        .header('content-length', String(Number(meta.bytes)))
        .header('content-disposition', contentDisposition(meta.filename))
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'; sandbox")
        .header('cache-control', 'private, no-store');
      return reply.send(body);
    },
  );

  app.get(
    '/api/files/:id/text',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'A document’s extracted text (what models receive)',
        params: FileParams,
        response: { 200: FileTextSchema, ...errors },
      },
    },
    async (request) => {
      const { meta, text } = await files.text(ownerOf(request), request.params.id);
      return {
        id: meta.id,
        text,
        text_chars: meta.text_chars ?? 0,
        text_truncated: Boolean(meta.text_truncated),
      };
    },
  );

  app.delete(
    '/api/files/:id',
    {
      preHandler: app.authenticate,
      schema: {
        ...common,
        summary: 'Delete a file and its stored bytes',
        params: FileParams,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await files.delete(ownerOf(request), request.params.id);
      reply.code(204);
      return null;
    },
  );
}

export { FileSchema };
