/**
 * A JSON schema reduced to the subset Gemini's `Schema` object accepts
 * (https://ai.google.dev/api/caching#Schema): Gemini answers 400 INVALID_ARGUMENT for fields it does not know
 * (`additionalProperties`, `$schema`, `strict`, `$defs`…), which clients generated from Zod or Pydantic
 * always send. Type arrays (`["string", "null"]`) become a type with `nullable`, `const` a one-value `enum`.
 */
const KEPT = new Set([
  'type',
  'format',
  'title',
  'description',
  'nullable',
  'enum',
  'maxItems',
  'minItems',
  'properties',
  'required',
  'minProperties',
  'maxProperties',
  'minLength',
  'maxLength',
  'pattern',
  'example',
  'anyOf',
  'propertyOrdering',
  'default',
  'items',
  'minimum',
  'maximum',
]);

export function cleanSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(cleanSchema);
  if (!schema || typeof schema !== 'object') return schema;
  const source = schema as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (!KEPT.has(key)) continue;
    if (key === 'properties' && value && typeof value === 'object') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, unknown>).map(([name, s]) => [name, cleanSchema(s)]),
      );
    } else if (key === 'items' || key === 'anyOf') out[key] = cleanSchema(value);
    else if (key === 'type' && Array.isArray(value)) {
      const types = value.filter((t) => t !== 'null');
      if (types.length !== value.length) out.nullable = true;
      if (types.length === 1) out.type = types[0];
      else if (types.length > 1) out.anyOf = types.map((t) => ({ type: t }));
    } else out[key] = value;
  }
  if ('const' in source && !('enum' in out)) out.enum = [source.const];
  // Gemini only takes enums of strings (on a string type).
  if (Array.isArray(out.enum) && out.enum.some((v) => typeof v !== 'string')) {
    out.enum = out.enum.map(String);
    out.type = 'string';
  }
  return out;
}
