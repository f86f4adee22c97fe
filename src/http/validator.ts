import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifyServerOptions } from 'fastify';

type BuildValidator = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator']
>;

const pool = AjvCompiler();

/**
 * Route schemas are compiled when the route is registered only on the hot paths (the model API under /v1,
 * the probes under /health); every other route's validators and serializers are compiled by the route's
 * first request (a few milliseconds, once). Compiling all ~120 validators and ~630 serializers (a route's
 * every response status) at start-up allocated ~70 MB and held ~4 MiB of heap for code most servers never
 * run, and the console's and admin API's routes are called by people, who do not notice a first call's
 * compile. A schema Ajv cannot compile now fails its route's requests (a 500) instead of start-up.
 */
export function compiledWhenRegistered(url: string | undefined): boolean {
  return everyRouteAtRegistration || url === undefined || /^\/(v1|health)(\/|$)/.test(url);
}

let everyRouteAtRegistration = false;

/** For a test that builds the whole app: every route's schemas compiled when registered, so one Ajv or
 * fast-json-stringify cannot compile fails the app's start there instead of a request in production. */
export function compileEveryRouteAtRegistration(on: boolean): void {
  everyRouteAtRegistration = on;
}

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
  return (route) => {
    const compile = () => (route.httpPart === 'body' ? exact(route) : coercing(route));
    return compiledWhenRegistered(route.url) ? compile() : compiledOnFirstUse(compile);
  };
};

type Validate = ReturnType<ReturnType<BuildValidator>>;

/**
 * A validator compiled by the first request it checks. Fastify reads a failed check's reasons from the
 * function's `errors`, as Ajv leaves them, so they are copied onto the stand-in after every call.
 */
function compiledOnFirstUse(compile: () => Validate): Validate {
  let compiled: Validate | undefined;
  const validate = ((data: unknown) => {
    compiled ??= compile();
    const valid = compiled(data);
    validate.errors = compiled.errors;
    return valid;
  }) as Validate;
  return validate;
}
