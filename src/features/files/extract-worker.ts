/**
 * What the extraction worker (extract.ts) runs, kept as source so it runs the same from src/ (tsx, whose
 * loader a worker thread does not inherit) and from dist/. The parsers are loaded by absolute path,
 * resolved by the parent: mammoth (DOCX, CommonJS) and unpdf (PDF, pdf.js; ES module).
 */
export interface ExtractJob {
  file: string;
  extension: string;
  maxChars: number;
  maxPages: number;
  mammoth: string;
  unpdf: string;
}

export type ExtractOutcome =
  | { ok: true; text: string; chars: number; truncated: boolean }
  | { ok: false; reason: string };

export const WORKER_SOURCE = `
const { parentPort, workerData: job } = require('node:worker_threads');
const { readFile } = require('node:fs/promises');

async function extract() {
  let text;
  if (job.extension === 'txt' || job.extension === 'md') {
    text = (await readFile(job.file, 'utf8')).replace(/^\\uFEFF/, '');
  } else if (job.extension === 'docx') {
    const mammoth = require(job.mammoth);
    text = (await mammoth.extractRawText({ path: job.file })).value;
  } else if (job.extension === 'pdf') {
    const { getDocumentProxy } = await import(job.unpdf);
    const pdf = await getDocumentProxy(new Uint8Array(await readFile(job.file)));
    if (pdf.numPages > job.maxPages)
      return { ok: false, reason: 'the PDF has ' + pdf.numPages + ' pages (at most ' + job.maxPages + ')' };
    const pages = [];
    let length = 0;
    for (let n = 1; n <= pdf.numPages && length <= job.maxChars; n++) {
      const page = await pdf.getPage(n);
      const content = await page.getTextContent();
      const pageText = content.items.map((item) => ('str' in item ? item.str : '')).join(' ');
      pages.push(pageText);
      length += pageText.length + 1;
      page.cleanup();
    }
    await pdf.destroy();
    text = pages.join('\\n');
  } else {
    return { ok: false, reason: 'no text extraction for .' + job.extension };
  }
  text = text.replace(/\\u0000/g, '');
  const truncated = text.length > job.maxChars;
  return { ok: true, text: truncated ? text.slice(0, job.maxChars) : text, chars: text.length, truncated };
}

extract().then(
  (outcome) => parentPort.postMessage(outcome),
  (err) =>
    parentPort.postMessage({
      ok: false,
      reason: ('the document could not be read (' + String((err && err.message) || err) + ')').slice(0, 300),
    }),
);
`;
