import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifyServerOptions } from 'fastify';

type BuildValidator = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>;

const pool = AjvCompiler();

/**
 * Fastify's validator with type coercion for what arrives as text (query strings, path parameters,
 * headers) and none for JSON bodies. Fastify coerces every part by default (`coerceTypes: 'array'`), and in
 * a body that turned `null` into `0` or `""` before any handler saw it: a budget's `"limit_usd": null` (no
 * limit) became a $0 budget that refused every request, a `"display_name": null` became "" (issue 19, item
 * 1). Ajv coerces while it tries the first branch of a union, so `string | null` did not help either. A
 * JSON body already has its types; whatever else Ajv is configured to do applies to both.
 */
export const buildValidator: BuildValidator = (externalSchemas, options) => {
  const coercing = pool(externalSchemas, options);
  // Colloquy does not use JTD mode: its options are plain Ajv options, where coerceTypes exists.
  const exact = pool(externalSchemas, {
    ...options,
    customOptions: { ...options?.customOptions, coerceTypes: false },
  } as typeof options);
  return (route) => (route.httpPart === 'body' ? exact(route) : coercing(route));
};
