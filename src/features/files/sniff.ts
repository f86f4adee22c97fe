import { open } from 'node:fs/promises';
import { AppError } from '../../core/errors.js';

export type FileKind = 'image' | 'document';

export interface Sniffed {
  /** The canonical extension of what the bytes are (jpeg → jpg). */
  extension: string;
  mediaType: string;
  kind: FileKind;
}

const BY_CONTENT: Record<string, Omit<Sniffed, 'extension'>> = {
  png: { mediaType: 'image/png', kind: 'image' },
  jpg: { mediaType: 'image/jpeg', kind: 'image' },
  webp: { mediaType: 'image/webp', kind: 'image' },
  gif: { mediaType: 'image/gif', kind: 'image' },
  pdf: { mediaType: 'application/pdf', kind: 'document' },
  docx: {
    mediaType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    kind: 'document',
  },
  txt: { mediaType: 'text/plain; charset=utf-8', kind: 'document' },
  md: { mediaType: 'text/markdown; charset=utf-8', kind: 'document' },
};

const canonical = (extension: string) => (extension === 'jpeg' ? 'jpg' : extension);

/**
 * A client's file name made safe to store and to echo in Content-Disposition: the last path segment only
 * (either separator), control and bidirectional-override characters removed, at most 200 characters.
 */
export function sanitizeFilename(raw: string): string {
  const base = raw.split(/[/\\]/).pop() ?? '';
  const cleaned = base
    // biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point
    .replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '')
    .replace(/^[.\s]+/, '')
    .trim()
    .slice(0, 200);
  if (!cleaned)
    throw new AppError(
      'invalid_file_name',
      'the file name is empty once path separators and control characters are removed',
      {
        param: 'file',
      },
    );
  return cleaned;
}

export function extensionOf(filename: string): string {
  const dot = filename.lastIndexOf('.');
  return dot > 0 ? filename.slice(dot + 1).toLowerCase() : '';
}

/**
 * What the uploaded bytes are, from their content (magic bytes; DOCX by its ZIP entries), checked against
 * the name's extension and the allow-list. Text has no magic: a .txt or .md file must be UTF-8 without NUL
 * bytes. Anything else answers 415 unsupported_file_type.
 */
export async function sniff(file: string, filename: string, allowed: readonly string[]): Promise<Sniffed> {
  const named = canonical(extensionOf(filename));
  const allowList = new Set(allowed.map(canonical));
  const refuse = (why: string) =>
    new AppError(
      'unsupported_file_type',
      `${why}; accepted: ${allowed.join(', ')} (checked by content, not only the name)`,
      { param: 'file' },
    );
  if (!allowList.has(named)) throw refuse(`files named .${named || '(no extension)'} are not accepted`);
  // file-type (and the tokenizer modules under it) is loaded by the first upload, not at start-up.
  const { fileTypeFromFile } = await import('file-type');
  const detected = await fileTypeFromFile(file).catch(() => undefined);
  if (detected) {
    const extension = canonical(detected.ext);
    const known = BY_CONTENT[extension];
    if (!known || extension === 'txt' || extension === 'md') throw refuse(`the content is ${detected.mime}`);
    if (extension !== named) throw refuse(`the content is ${detected.mime}, not .${named}`);
    return { extension, ...known };
  }
  if ((named === 'txt' || named === 'md') && (await isUtf8Text(file)))
    return { extension: named, ...BY_CONTENT[named]! };
  throw refuse(`the content is not a .${named} file`);
}

/** UTF-8 without NUL bytes, read in bounded chunks (a multi-byte character split at a chunk edge is fine). */
async function isUtf8Text(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (chunk.includes(0)) return false;
      decoder.decode(chunk, { stream: true });
    }
    decoder.decode();
    return true;
  } catch {
    return false;
  } finally {
    await handle.close();
  }
}
