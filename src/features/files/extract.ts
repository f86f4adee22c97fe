import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type ExtractJob, type ExtractOutcome, WORKER_SOURCE } from './extract-worker.js';

export const EXTRACT_LIMITS = {
  /** Heap of the extraction worker; past it the worker dies and the upload is refused. */
  heapMb: 256,
  timeoutMs: 20_000,
  /** Text kept per document (characters); what is cut is marked when the text goes to a model. */
  maxChars: 1_000_000,
  maxPages: 1_000,
};

const require = createRequire(import.meta.url);
const PARSERS = { mammoth: require.resolve('mammoth'), unpdf: pathToFileURL(require.resolve('unpdf')).href };

/**
 * Extracts a document's text in a fresh worker thread with a heap limit and a deadline; the worker is
 * terminated on either, so a hostile PDF or DOCX costs at most that memory and time.
 */
export function extractText(
  job: Pick<ExtractJob, 'file' | 'extension'>,
  limits = EXTRACT_LIMITS,
): Promise<ExtractOutcome> {
  return new Promise((resolve) => {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        ...job,
        ...PARSERS,
        maxChars: limits.maxChars,
        maxPages: limits.maxPages,
      } satisfies ExtractJob,
      resourceLimits: { maxOldGenerationSizeMb: limits.heapMb, maxYoungGenerationSizeMb: 32 },
      stdout: true,
      stderr: true,
    });
    let settled = false;
    const settle = (outcome: ExtractOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void worker.terminate();
      resolve(outcome);
    };
    const timer = setTimeout(
      () =>
        settle({ ok: false, reason: `reading the document took longer than ${limits.timeoutMs / 1000} s` }),
      limits.timeoutMs,
    );
    worker.once('message', (outcome: ExtractOutcome) => settle(outcome));
    worker.once('error', (err: NodeJS.ErrnoException) =>
      settle({
        ok: false,
        reason:
          err.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? `reading the document needed more than ${limits.heapMb} MiB`
            : 'the document could not be read',
      }),
    );
    worker.once('exit', () => settle({ ok: false, reason: 'the document could not be read' }));
  });
}
