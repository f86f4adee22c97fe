import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import { compiledWhenRegistered } from './validator.js';

type Schema = Record<string, unknown>;
const SCALAR = new Set(['string', 'number', 'integer', 'boolean', 'null']);
const isSchema = (value: unknown): value is Schema =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A union whose branches differ by JSON type (`string | null`, `'a' | 'b'`, `{…} | null`) as one schema with
 * a list of types, or undefined when a validator is needed to choose (two object shapes, nested unions, a
 * string or an array).
 */
function asTypeList(branches: unknown[]): Schema | undefined {
  const byType = new Map<string, Schema>();
  for (const branch of branches) {
    if (!isSchema(branch) || typeof branch.type !== 'string') return undefined;
    if (branch.anyOf || branch.oneOf || branch.allOf || branch.$ref) return undefined;
    if (byType.has(branch.type) && !SCALAR.has(branch.type)) return undefined;
    if (!byType.has(branch.type)) byType.set(branch.type, branch);
  }
  const types = [...byType.keys()];
  // fast-json-stringify writes anything with its own toString() (an array, a Date) as a string when
  // `string` is a listed type, so a string that could also be an array or object keeps its validator.
  if (byType.has('string') && (byType.has('array') || byType.has('object'))) return undefined;
  const { const: _const, enum: _enum, ...merged } = Object.assign({}, ...byType.values()) as Schema;
  return { ...merged, type: types.length === 1 ? types[0] : types };
}

/**
 * A response schema as fast-json-stringify serializes it fastest. It serializes an `anyOf` by running Ajv
 * against each branch, on every response, after compiling Ajv for the route on its first response (~70 ms
 * of the event loop on a conversation turn's); a list of types is a `typeof` check. Serialization never
 * validated the literals of a union, so nothing a client sees changes.
 */
export function plainUnions(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(plainUnions);
  if (!isSchema(schema)) return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'properties' || key === 'patternProperties') {
      out[key] = isSchema(value)
        ? Object.fromEntries(Object.entries(value).map(([name, s]) => [name, plainUnions(s)]))
        : value;
    } else if (['items', 'additionalProperties', 'anyOf', 'oneOf', 'allOf'].includes(key)) {
      out[key] = plainUnions(value);
    } else out[key] = value;
  }
  const union = (out.anyOf ?? out.oneOf) as unknown[] | undefined;
  const merged = union && asTypeList(union);
  if (!merged) return out;
  const { anyOf: _anyOf, oneOf: _oneOf, ...siblings } = out;
  return { ...siblings, ...merged };
}

const defaultFactory = SerializerSelector();

/** Fastify's own serializer factory, given response schemas (and the shared ones they refer to) whose type
 * unions are type lists. */
export const buildSerializer: ReturnType<typeof SerializerSelector> = (externalSchemas, options) => {
  const shared = isSchema(externalSchemas)
    ? Object.fromEntries(Object.entries(externalSchemas).map(([id, schema]) => [id, plainUnions(schema)]))
    : externalSchemas;
  const compileFor = defaultFactory(shared, options);
  return (route) => {
    const compile = () => compileFor({ ...route, schema: plainUnions(route.schema) });
    if (compiledWhenRegistered(route.url)) return compile();
    // See compiledWhenRegistered: compiled by the first response of this route and status.
    let compiled: ReturnType<typeof compile> | undefined;
    return (data) => {
      compiled ??= compile();
      return compiled(data);
    };
  };
};
