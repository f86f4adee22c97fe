import type { Config } from '../config/load-config.js';
import { createStorage } from '../features/files/storage.js';

type Add = (id: string, severity: 'error' | 'warning' | 'info', message: string, fix: string) => void;

/**
 * The file storage (issue 24) accepts a write, a read and a delete: on disk, FILES_DIR is a writable
 * directory; on S3, the bucket answers to the credentials of the AWS chain. Each within the timeout;
 * only a failure is reported.
 */
export async function checkFileStorage(config: Config, timeoutMs: number, add: Add) {
  const storage = config.files.storage;
  try {
    const store = await createStorage(storage);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      store.check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    // A sound storage adds no finding (a sound configuration has none at all).
  } catch (err) {
    const message = ((err as Error)?.message ?? String(err)).split('\n')[0];
    add(
      'files.storage_unavailable',
      'error',
      storage.kind === 'disk'
        ? `the file directory ${storage.dir} is not writable: ${message}`
        : `the S3 bucket ${storage.bucket} cannot be written with the AWS credentials found: ${message}`,
      storage.kind === 'disk'
        ? 'create FILES_DIR (default ./data/files) writable by the server, or set S3_BUCKET'
        : 'check S3_BUCKET, S3_ENDPOINT, S3_REGION and the AWS credentials (AWS_ACCESS_KEY_ID…, a role, or a profile)',
    );
  }
}
