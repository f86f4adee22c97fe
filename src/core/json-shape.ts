/**
 * Bounds on the shape of JSON a client sends (issue 18 part 2). JSON.parse itself is iterative, but much
 * that handles the parsed value afterwards recurses: JSON.stringify when a body is forwarded upstream, the
 * response cache's canonical JSON, schema validation, log serialisers, translation to other providers. A
 * body of 5,000 nested arrays (~10 KB) overflowed the stack in those and answered 500. Every JSON body and
 * WebSocket frame is checked once, where it is parsed, so nothing behind the edge sees a deeper value.
 *
 * The limits are far above any real request: OpenAI allows 10 levels of nesting in a structured-output
 * schema, 128 tools, 2,048 embedding inputs; Colloquy accepts 10,000 messages.
 */
export interface JsonLimits {
  /** Containers inside containers: `[[1]]` is 2 deep. */
  maxDepth: number;
  /** Items of one array. */
  maxItems: number;
  /** Keys of one object. */
  maxKeys: number;
}

export const JSON_LIMITS: Readonly<JsonLimits> = Object.freeze({
  maxDepth: 64,
  maxItems: 10_000,
  maxKeys: 1_000,
});

/**
 * Why `value` (as parsed from JSON) exceeds the limits, or undefined when it does not. Iterative, with an
 * explicit stack, so the check itself cannot overflow; it stops at the first problem. A small chat request
 * (~10 values) costs well under a microsecond; its cost grows with the number of containers, which the
 * body size limit bounds.
 */
export function jsonShapeProblem(value: unknown, limits: JsonLimits = JSON_LIMITS): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const pending: object[] = [value];
  const depths: number[] = [1];
  while (pending.length > 0) {
    const node = pending.pop()!;
    const depth = depths.pop()!;
    if (depth > limits.maxDepth) return `JSON nesting deeper than ${limits.maxDepth}`;
    if (Array.isArray(node)) {
      if (node.length > limits.maxItems)
        return `JSON array of more than ${limits.maxItems.toLocaleString('en')} items`;
      for (const item of node)
        if (item !== null && typeof item === 'object') {
          pending.push(item);
          depths.push(depth + 1);
        }
      continue;
    }
    let keys = 0;
    for (const key in node) {
      if (++keys > limits.maxKeys)
        return `JSON object of more than ${limits.maxKeys.toLocaleString('en')} keys`;
      const item = (node as Record<string, unknown>)[key];
      if (item !== null && typeof item === 'object') {
        pending.push(item);
        depths.push(depth + 1);
      }
    }
  }
  return undefined;
}

/** JSON.parse, refusing what jsonShapeProblem refuses: throws a SyntaxError or a JsonShapeError. */
export function parseBoundedJson(text: string, limits: JsonLimits = JSON_LIMITS): unknown {
  const value = JSON.parse(text) as unknown;
  const problem = jsonShapeProblem(value, limits);
  if (problem) throw new JsonShapeError(problem);
  return value;
}

export class JsonShapeError extends Error {
  override name = 'JsonShapeError';
}
