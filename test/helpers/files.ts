import { once } from 'node:events';
import { crc32, createDeflateRaw, deflateRawSync } from 'node:zlib';
import sharp from 'sharp';

/** Test files made on the spot: no binary fixtures in the repository. */

/** A multipart/form-data body with one file part, built by hand so names can be as hostile as needed. */
export function multipart(
  filename: string,
  data: Buffer | string,
  field = 'file',
  type = 'application/octet-stream',
) {
  const boundary = `----colloquy${Math.random().toString(16).slice(2)}`;
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: ${type}\r\n\r\n`,
      'utf8',
    ),
    Buffer.isBuffer(data) ? data : Buffer.from(data),
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { payload: body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** A ZIP archive (stored or deflated entries), from APPNOTE.TXT: local headers, central directory, end record. */
export type ZipEntry =
  | { name: string; data: Buffer }
  /** Already deflated (a bomb is built without ever holding its inflated bytes); `size` may lie. */
  | { name: string; compressed: Buffer; crc: number; size: number };

export function zip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const compressed = 'data' in entry ? deflateRawSync(entry.data) : entry.compressed;
    const crc = 'data' in entry ? crc32(entry.data) : entry.crc;
    const size = 'data' in entry ? entry.data.length : entry.size;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(compressed.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, compressed);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0);
    dir.writeUInt16LE(20, 4);
    dir.writeUInt16LE(20, 6);
    dir.writeUInt16LE(8, 10);
    dir.writeUInt32LE(crc, 16);
    dir.writeUInt32LE(compressed.length, 20);
    dir.writeUInt32LE(size, 24);
    dir.writeUInt16LE(name.length, 28);
    dir.writeUInt32LE(offset, 42);
    central.push(dir, name);
    offset += 30 + name.length + compressed.length;
  }
  const dirBuffer = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dirBuffer.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dirBuffer, end]);
}

export const CONTENT_TYPES = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`;
const RELS = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>`;

export const documentXml = (paragraphs: string[]) =>
  `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>${paragraphs
    .map((p) => `<w:p><w:r><w:t>${p}</w:t></w:r></w:p>`)
    .join('')}</w:body></w:document>`;

/** A minimal Word document (ECMA-376 parts: content types, package relationships, the main document). */
export function docx(paragraphs: string[], document = Buffer.from(documentXml(paragraphs))): Buffer {
  return zip([
    { name: '[Content_Types].xml', data: Buffer.from(CONTENT_TYPES) },
    { name: '_rels/.rels', data: Buffer.from(RELS) },
    { name: 'word/document.xml', data: document },
  ]);
}

/** A PDF with one line of text per page (PDF 1.4 objects and a cross-reference table, ISO 32000-1 §7). */
export function pdf(pages: string[]): Buffer {
  const objects: string[] = [];
  const pageIds = pages.map((_, i) => 4 + i * 2);
  objects[1] = '<</Type/Catalog/Pages 2 0 R>>';
  objects[2] = `<</Type/Pages/Kids[${pageIds.map((id) => `${id} 0 R`).join(' ')}]/Count ${pages.length}>>`;
  objects[3] = '<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>';
  pages.forEach((text, i) => {
    const stream = `BT /F1 12 Tf 20 100 Td (${text.replace(/[()\\]/g, '')}) Tj ET`;
    objects[pageIds[i]!] =
      `<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 200]/Contents ${pageIds[i]! + 1} 0 R/Resources<</Font<</F1 3 0 R>>>>>>`;
    objects[pageIds[i]! + 1] = `<</Length ${stream.length}>>\nstream\n${stream}\nendstream`;
  });
  const chunks = ['%PDF-1.4\n'];
  let length = chunks[0]!.length;
  const offsets: number[] = [];
  for (let id = 1; id < objects.length; id++) {
    offsets[id] = length;
    const chunk = `${id} 0 obj\n${objects[id]}\nendobj\n`;
    chunks.push(chunk);
    length += Buffer.byteLength(chunk, 'latin1');
  }
  let out = chunks.join('');
  const xref = length;
  out += `xref\n0 ${objects.length}\n0000000000 65535 f \n`;
  for (let id = 1; id < objects.length; id++) out += `${String(offsets[id]).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<</Size ${objects.length}/Root 1 0 R>>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

export const png = (width: number, height: number, color = '#3366cc') =>
  sharp({ create: { width, height, channels: 3, background: color } })
    .png()
    .toBuffer();

/** A JPEG carrying EXIF (camera make, a GPS-like comment) and orientation 6 (rotate 90° to view). */
export const jpegWithExif = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#cc3333' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .withExif({ IFD0: { Make: 'SecretCam', Copyright: 'GPS 48.8584N 2.2945E' } })
    .toBuffer();

/**
 * A DOCX whose word/document.xml inflates to `mib` MiB (whitespace after a valid start), deflated in a
 * stream so the test never holds it; `declaredSize` makes the archive lie about it.
 */
export async function zipBombDocx(mib: number, declaredSize?: number): Promise<Buffer> {
  const head = Buffer.from(documentXml(['bomb']).replace('</w:body></w:document>', ''));
  const block = Buffer.alloc(1024 * 1024, 0x20);
  const deflater = createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflater.on('data', (chunk: Buffer) => out.push(chunk));
  const ended = once(deflater, 'end');
  let crc = crc32(head);
  deflater.write(head);
  for (let i = 0; i < mib; i++) {
    crc = crc32(block, crc);
    if (!deflater.write(block)) await once(deflater, 'drain');
  }
  deflater.end();
  await ended;
  return zip([
    { name: '[Content_Types].xml', data: Buffer.from(CONTENT_TYPES) },
    { name: '_rels/.rels', data: Buffer.from(RELS) },
    {
      name: 'word/document.xml',
      compressed: Buffer.concat(out),
      crc,
      size: declaredSize ?? head.length + mib * 1024 * 1024,
    },
  ]);
}
