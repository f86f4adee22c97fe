import type { Kysely } from 'kysely';
import { AppError } from '../../core/errors.js';
import { countTextTokens } from '../../providers/tokens.js';
import type { ChatCompletionRequest, ContentPart } from '../../providers/types.js';
import { modelImageKey } from './service.js';
import type { FileStorage } from './storage.js';
import type { FileRow, FileStore } from './store.js';
import { supportsVision } from './vision.js';

export const MAX_ATTACHMENTS = 10;

export interface PartsOptions {
  model: string;
  /** Tokens the documents of one message may take together; past it they are cut, with a note. */
  documentBudgetTokens: number;
}

/**
 * Files as the model receives them, for the conversation API and /v1: an image becomes an `image_url` part
 * with a data URL of the image prepared at upload (resized, EXIF stripped) — only for models with vision,
 * a 400 `model_without_vision` otherwise —, a document becomes a text part holding its extracted text,
 * cut to the context window with a note saying so.
 */
export class Attachments {
  constructor(
    private readonly deps: {
      store: FileStore;
      storage: FileStorage;
      vision?: ((model: string) => boolean | undefined) | undefined;
    },
  ) {}

  /** The caller's files, in the order given; 404 naming the first that is not theirs (or gone). */
  async owned(userId: string | null, ids: readonly string[]): Promise<FileRow[]> {
    const unique = [...new Set(ids)];
    if (unique.length > MAX_ATTACHMENTS)
      throw new AppError('invalid_request', `at most ${MAX_ATTACHMENTS} files per message`, {
        param: 'attachments',
      });
    const rows = userId ? await this.deps.store.byIds(unique) : [];
    const byId = new Map(rows.filter((r) => r.user_id === userId).map((r) => [r.id, r]));
    const missing = unique.find((id) => !byId.has(id));
    if (missing) throw new AppError('not_found', `file ${missing} not found`, { param: 'attachments' });
    return unique.map((id) => byId.get(id)!);
  }

  assertVision(model: string, files: readonly FileRow[]) {
    const image = files.find((f) => f.kind === 'image');
    if (image && !supportsVision(model, this.deps.vision))
      throw new AppError(
        'model_without_vision',
        `the model ${model} does not accept images (file ${image.id}); choose a model with vision, or set \`vision: true\` on its alias in the routing file`,
        { param: 'model' },
      );
  }

  // biome-ignore lint/suspicious/noExplicitAny: a transaction of any feature's table set
  link(db: Kysely<any>, messageId: string, conversationId: string, ids: string[]) {
    return this.deps.store.link(db, messageId, conversationId, ids);
  }

  filesOfMessages(ids: string[]) {
    return this.deps.store.filesOfMessages(ids);
  }

  /** Rows for ids that may have been deleted since (history): the ones still there, in order. */
  async existing(ids: readonly string[]): Promise<FileRow[]> {
    const rows = new Map((await this.deps.store.byIds([...new Set(ids)])).map((r) => [r.id, r]));
    return ids.flatMap((id) => (rows.has(id) ? [rows.get(id)!] : []));
  }

  async parts(files: readonly FileRow[], options: PartsOptions): Promise<ContentPart[]> {
    this.assertVision(options.model, files);
    const documents = files.filter((f) => f.kind === 'document');
    const share = Math.max(64, Math.floor(options.documentBudgetTokens / Math.max(1, documents.length)));
    const parts: ContentPart[] = [];
    for (const file of files) {
      if (file.kind === 'document') parts.push({ type: 'text', text: await documentText(file, share) });
      else parts.push(await this.#imagePart(file));
    }
    return parts;
  }

  async #imagePart(file: FileRow): Promise<ContentPart> {
    const stream = await this.deps.storage.get(modelImageKey(file.storage_key));
    if (!stream)
      throw new AppError('not_found', `file ${file.id}’s content is gone`, { param: 'attachments' });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    // PNG stays PNG (see images.ts); everything else was re-encoded as JPEG.
    const type = data.subarray(0, 4).toString('latin1') === '\x89PNG' ? 'image/png' : 'image/jpeg';
    return { type: 'image_url', image_url: { url: `data:${type};base64,${data.toString('base64')}` } };
  }
}

/**
 * A document as one text part, within `budgetTokens`. A token is at least one byte, so text whose bytes fit
 * needs no tokenizer; otherwise it is cut in proportion to its token count, and a note tells the model (and
 * whoever reads the prompt) how much was left out.
 */
export async function documentText(
  file: Pick<FileRow, 'filename' | 'text' | 'text_chars' | 'text_truncated'>,
  budgetTokens: number,
) {
  const full = file.text ?? '';
  const total = file.text_chars ?? full.length;
  let kept = full;
  if (Buffer.byteLength(full) > budgetTokens) {
    const tokens = await countTextTokens(full);
    if (tokens > budgetTokens) kept = full.slice(0, Math.floor((full.length * budgetTokens * 0.95) / tokens));
  }
  const cut = kept.length < total;
  const note = cut
    ? `\n[Note: this document was cut to fit the model's context window: the first ${kept.length.toLocaleString('en-US')} of ${total.toLocaleString('en-US')} characters are included.]`
    : '';
  return `[Document: ${file.filename}]\n${kept}${note}\n[End of document: ${file.filename}]`;
}

/** An OpenAI file content part referencing an upload (https://platform.openai.com/docs/api-reference/chat/create, `file.file_id`). */
function fileIdOf(part: ContentPart): string | undefined {
  if (part.type !== 'file' || typeof part.file !== 'object' || part.file === null) return undefined;
  const id = (part.file as { file_id?: unknown }).file_id;
  return typeof id === 'string' ? id : undefined;
}

/** Whether a request names an upload: most do not, and skip expandFileParts' arrays and promise. */
export function namesUploads(body: ChatCompletionRequest): boolean {
  for (const message of body.messages) {
    if (!Array.isArray(message.content)) continue;
    for (const part of message.content) if (fileIdOf(part)) return true;
  }
  return false;
}

/**
 * /v1/chat/completions: `{type:'file', file:{file_id}}` parts naming the caller's uploads are replaced by
 * what the model receives (image part, or the document's text); other file parts (`file_data`) pass through
 * to the upstream untouched. A request without file ids is returned as is.
 */
export async function expandFileParts(
  attachments: Attachments,
  userId: string | null,
  body: ChatCompletionRequest,
  documentBudgetTokens: number,
): Promise<ChatCompletionRequest> {
  const ids = body.messages.flatMap((m) =>
    Array.isArray(m.content) ? m.content.flatMap((p) => fileIdOf(p) ?? []) : [],
  );
  if (ids.length === 0) return body;
  if (!userId)
    throw new AppError('invalid_request', 'the master key has no user account: files belong to users', {
      param: 'messages',
    });
  const rows = new Map((await attachments.owned(userId, ids)).map((r) => [r.id, r]));
  attachments.assertVision(body.model, [...rows.values()]);
  const messages = await Promise.all(
    body.messages.map(async (message) => {
      if (!Array.isArray(message.content) || !message.content.some((p) => fileIdOf(p))) return message;
      const content: ContentPart[] = [];
      for (const part of message.content) {
        const id = fileIdOf(part);
        if (id)
          content.push(
            ...(await attachments.parts([rows.get(id)!], { model: body.model, documentBudgetTokens })),
          );
        else content.push(part);
      }
      return { ...message, content };
    }),
  );
  return { ...body, messages };
}
