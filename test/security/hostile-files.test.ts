import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import { assertError, bearer, createUser, startTestApp, type TestApp } from '../helpers/app.js';
import { multipart, pdf, png, zipBombDocx } from '../helpers/files.js';

/**
 * Issue 24's hostile-file corpus: every file here is refused with a clear 4xx (or, where harmless, stored
 * and served inert), within the upload's limits, and the server's memory stays bounded — measured around
 * the whole corpus in this process, where the server runs.
 */
const MiB = 1024 * 1024;

/** One chunk of a PNG (length, type, data, CRC of type+data: https://www.w3.org/TR/png-3/#5Chunk-layout). */
function pngChunk(type: string, data: Buffer) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A 200-byte PNG declaring 100,000 × 100,000 pixels: a decompression bomb if decoded. */
function hugePng() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1024))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A PDF whose only page's content stream is a FlateDecode bomb and whose resources nest 5,000 deep. */
function nestedPdf(): Buffer {
  const bomb = deflateSync(Buffer.alloc(64 * MiB, 0x20));
  const nested = `${'['.repeat(5_000)}${']'.repeat(5_000)}`;
  const head = `%PDF-1.4
1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj
2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj
3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Contents 4 0 R/Resources<</X ${nested}>>>>endobj
4 0 obj<</Length ${bomb.length}/Filter/FlateDecode>>stream
`;
  return Buffer.concat([
    Buffer.from(head, 'latin1'),
    bomb,
    Buffer.from('\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n', 'latin1'),
  ]);
}

describe('hostile files', () => {
  let t: TestApp;
  let dir: string;
  let auth: Record<string, string>;
  const upload = (name: string, data: Buffer | string) => {
    const body = multipart(name, data);
    return t.inject({
      method: 'POST',
      url: '/api/files',
      headers: { ...auth, ...body.headers },
      payload: body.payload,
    });
  };

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-hostile-'));
    t = await startTestApp({ env: { FILES_DIR: dir } });
    auth = bearer((await createUser(t, 'hostile@example.com')).accessToken);
  });
  after(async () => {
    await t?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses every hostile file with a 4xx and keeps memory bounded', async () => {
    const corpus: [string, string, () => Buffer | Promise<Buffer>, number, string][] = [
      // A DOCX whose document.xml inflates to 100 MiB, sizes declared honestly, then lying (declared 1 KiB).
      ['zip bomb as DOCX', 'bomb.docx', () => zipBombDocx(100), 422, 'unreadable_file'],
      ['zip bomb with lying sizes', 'liar.docx', () => zipBombDocx(100, 1024), 422, 'unreadable_file'],
      [
        'PDF with 5,000 pages',
        'pages.pdf',
        () => pdf(Array.from({ length: 5_000 }, (_, i) => `page ${i}`)),
        422,
        'unreadable_file',
      ],
      ['PNG declaring 100k × 100k pixels', 'huge.png', hugePng, 422, 'unreadable_file'],
      [
        'GIF header over a script (polyglot)',
        'evil.gif',
        () => Buffer.from('GIF89a/*\x00\x00*/=1;alert(document.cookie)//'),
        422,
        'unreadable_file',
      ],
      [
        'HTML named .png',
        'page.png',
        () => Buffer.from('<!doctype html><script>alert(1)</script>'),
        415,
        'unsupported_file_type',
      ],
      ['PNG named .html', 'image.html', () => png(8, 8), 415, 'unsupported_file_type'],
      ['a name that is only separators', '../..//', () => Buffer.from('text'), 400, 'invalid_file_name'],
      [
        'an executable named .txt',
        'run.txt',
        () => Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0]),
        415,
        'unsupported_file_type',
      ],
    ];
    // Built first, so what is measured is the server's handling of them, not their making.
    const cases = await Promise.all(
      corpus.map(
        async ([what, name, make, status, code]) => [what, name, await make(), status, code] as const,
      ),
    );
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 20);
    try {
      for (const [what, name, data, status, code] of cases) {
        const res = await upload(name, data);
        assert.equal(res.statusCode, status, `${what}: ${res.body}`);
        assertError(res, status, code);
      }
    } finally {
      clearInterval(sampler);
    }
    // Generous (allocators keep freed pages), yet far below what decoding any of these would take.
    assert.ok(peak - rssBefore < 400 * MiB, `RSS grew by ${Math.round((peak - rssBefore) / MiB)} MiB`);
    const list = await t.inject({ method: 'GET', url: '/api/files', headers: auth });
    assert.deepEqual(list.json().data, [], 'nothing hostile was kept');
    // The server is unharmed: it still answers.
    assert.equal((await t.inject({ method: 'GET', url: '/health' })).statusCode < 500, true);
  });

  it('reads a PDF with 5,000-deep nesting and a 64 MiB compressed-stream bomb within the worker’s limits', async () => {
    // pdf.js inflates the stream in the worker (heap-limited, 20 s): the page holds no text, nothing breaks.
    const res = await upload('nested.pdf', nestedPdf());
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(res.json().text_chars, 0);
    assert.equal((await t.inject({ method: 'GET', url: '/api/files', headers: auth })).statusCode, 200);
  });

  it('stores names without path separators or control characters, and serves polyglots inert', async () => {
    const traversal = await upload('../../etc/passwd.txt', 'root:x:0:0');
    assert.equal(traversal.statusCode, 201, traversal.body);
    assert.equal(traversal.json().filename, 'passwd.txt');
    const windows = await upload('..\\..\\boot.ini.txt', 'x');
    assert.equal(windows.json().filename, 'boot.ini.txt');
    const control = await upload('evil\x01\x1b[31m\x7f.txt', 'x');
    assert.equal(control.json().filename, 'evil[31m.txt');
    const bidi = await upload('r\u00e9sum\u00e9\u202egnp.txt', 'x');
    assert.equal(
      bidi.json().filename,
      'r\u00e9sum\u00e9gnp.txt',
      'no right-to-left override to disguise the extension',
    );
    const download = await t.inject({
      method: 'GET',
      url: `/api/files/${bidi.json().id}/content`,
      headers: auth,
    });
    assert.equal(
      download.headers['content-disposition'],
      'attachment; filename="r_sum_gnp.txt"; filename*=UTF-8\'\'r%C3%A9sum%C3%A9gnp.txt',
    );

    // A real PNG with an HTML page appended is a valid image: kept, but only ever served as a PNG download.
    const polyglot = Buffer.concat([await png(8, 8), Buffer.from('<html><script>alert(1)</script></html>')]);
    const stored = await upload('poly.png', polyglot);
    assert.equal(stored.statusCode, 201, stored.body);
    const served = await t.inject({
      method: 'GET',
      url: `/api/files/${stored.json().id}/content`,
      headers: auth,
    });
    assert.equal(served.headers['content-type'], 'image/png');
    assert.equal(served.headers['x-content-type-options'], 'nosniff');
    assert.match(String(served.headers['content-disposition']), /^attachment;/);
    assert.match(String(served.headers['content-security-policy']), /sandbox/);
  });

  it('answers a malformed multipart body or a missing field with 400, not 500', async () => {
    const truncated = multipart('a.txt', 'hello');
    const res = await t.inject({
      method: 'POST',
      url: '/api/files',
      headers: { ...auth, ...truncated.headers },
      payload: truncated.payload.subarray(0, truncated.payload.length - 20),
    });
    assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${res.statusCode} ${res.body}`);
    const wrongField = multipart('a.txt', 'hello', 'document');
    assertError(
      await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...auth, ...wrongField.headers },
        payload: wrongField.payload,
      }),
      400,
      'invalid_request',
    );
    assertError(
      await t.inject({
        method: 'POST',
        url: '/api/files',
        headers: { ...auth, 'content-type': 'application/json' },
        payload: '{}',
      }),
      415,
      'unsupported_media_type',
    );
  });
});
