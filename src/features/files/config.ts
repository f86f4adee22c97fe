import path from 'node:path';
import Type from 'typebox';

/**
 * The environment variables of file uploads (issue 24), spread into `EnvSchema` (`...FILES_ENV`) and listed
 * in `.env.example`. Storage is local disk under FILES_DIR unless S3_BUCKET names an S3-compatible bucket.
 */
export const DEFAULT_ALLOWED_EXTENSIONS = ['txt', 'md', 'pdf', 'docx', 'png', 'jpg', 'jpeg', 'webp', 'gif'];
/** Every extension Colloquy can check by content and read; ALLOWED_EXTENSIONS picks among them. */
export const SUPPORTED_EXTENSIONS = new Set(DEFAULT_ALLOWED_EXTENSIONS);

export const FILES_ENV = {
  MAX_UPLOAD_SIZE: Type.Integer({
    description: 'the largest uploaded file in bytes, 1 to 1073741824 (default 10 MiB)',
    minimum: 1,
    maximum: 1024 ** 3,
    default: 10 * 1024 * 1024,
  }),
  ALLOWED_EXTENSIONS: Type.Optional(
    Type.String({
      description: `a comma-separated list of file extensions accepted for upload, among ${DEFAULT_ALLOWED_EXTENSIONS.join(',')}`,
      pattern: '^[A-Za-z0-9]+( *, *[A-Za-z0-9]+)*$',
    }),
  ),
  FILES_QUOTA_BYTES: Type.Integer({
    description: 'bytes of files one user may keep, 0 (no quota) or more (default 1 GiB)',
    minimum: 0,
    maximum: Number.MAX_SAFE_INTEGER,
    default: 1024 ** 3,
  }),
  FILES_DIR: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'the directory uploaded files are kept in (default ./data/files)',
    }),
  ),
  S3_BUCKET: Type.Optional(
    Type.String({ minLength: 1, description: 'an S3 bucket name: files are kept there instead of on disk' }),
  ),
  S3_ENDPOINT: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'an S3-compatible endpoint URL such as http://minio:9000 (default: AWS S3)',
    }),
  ),
  S3_REGION: Type.Optional(Type.String({ minLength: 1, description: 'the bucket’s region, e.g. us-east-1' })),
  S3_PREFIX: Type.Optional(
    Type.String({ minLength: 1, description: 'a key prefix inside the bucket, e.g. colloquy/' }),
  ),
  S3_FORCE_PATH_STYLE: Type.Optional(
    Type.Boolean({ description: 'true or false: path-style URLs (MinIO and most S3-compatible stores)' }),
  ),
};

export type FilesStorageConfig =
  | { kind: 'disk'; dir: string }
  | {
      kind: 's3';
      bucket: string;
      endpoint: string | undefined;
      region: string;
      prefix: string;
      forcePathStyle: boolean;
    };

export interface FilesConfig {
  maxUploadBytes: number;
  allowedExtensions: string[];
  quotaBytes: number;
  storage: FilesStorageConfig;
}

interface FilesVars {
  MAX_UPLOAD_SIZE: number;
  ALLOWED_EXTENSIONS?: string | undefined;
  FILES_QUOTA_BYTES: number;
  FILES_DIR?: string | undefined;
  S3_BUCKET?: string | undefined;
  S3_ENDPOINT?: string | undefined;
  S3_REGION?: string | undefined;
  S3_PREFIX?: string | undefined;
  S3_FORCE_PATH_STYLE?: boolean | undefined;
  AWS_REGION?: string | undefined;
}

export function filesConfigFromEnv(vars: FilesVars, problems: string[]): FilesConfig {
  const allowed = vars.ALLOWED_EXTENSIONS
    ? vars.ALLOWED_EXTENSIONS.split(',').map((e) => e.trim().toLowerCase().replace(/^\./, ''))
    : DEFAULT_ALLOWED_EXTENSIONS;
  const unknown = allowed.filter((e) => !SUPPORTED_EXTENSIONS.has(e));
  if (unknown.length)
    problems.push(
      `ALLOWED_EXTENSIONS: expected extensions among ${DEFAULT_ALLOWED_EXTENSIONS.join(',')} (got ${unknown.join(',')}, which Colloquy cannot check by content)`,
    );
  const storage: FilesStorageConfig = vars.S3_BUCKET
    ? {
        kind: 's3',
        bucket: vars.S3_BUCKET,
        endpoint: vars.S3_ENDPOINT,
        region: vars.S3_REGION ?? vars.AWS_REGION ?? 'us-east-1',
        prefix: vars.S3_PREFIX ?? '',
        // S3-compatible stores behind an endpoint mostly want path style; AWS itself, virtual hosts.
        forcePathStyle: vars.S3_FORCE_PATH_STYLE ?? Boolean(vars.S3_ENDPOINT),
      }
    : { kind: 'disk', dir: path.resolve(vars.FILES_DIR ?? './data/files') };
  return {
    maxUploadBytes: vars.MAX_UPLOAD_SIZE,
    allowedExtensions: [...new Set(allowed)],
    quotaBytes: vars.FILES_QUOTA_BYTES,
    storage,
  };
}
