import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson } from '../cache/response-cache.js';
import { AppError } from './errors.js';
import { JSON_LIMITS, JsonShapeError, jsonShapeProblem, parseBoundedJson } from './json-shape.js';

const nested = (depth: number) => JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`) as unknown;

describe('jsonShapeProblem', () => {
  it('accepts scalars, ordinary requests and values exactly at each limit', () => {
    for (const v of [null, 1, 'x', true, {}, []]) assert.equal(jsonShapeProblem(v), undefined);
    assert.equal(jsonShapeProblem({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }), undefined);
    assert.equal(jsonShapeProblem(nested(JSON_LIMITS.maxDepth)), undefined);
    assert.equal(jsonShapeProblem(new Array(JSON_LIMITS.maxItems).fill(0)), undefined);
    const keys = Object.fromEntries(Array.from({ length: JSON_LIMITS.maxKeys }, (_, i) => [`k${i}`, i]));
    assert.equal(jsonShapeProblem(keys), undefined);
  });

  it('names the first limit exceeded: depth, array items, object keys', () => {
    assert.equal(jsonShapeProblem(nested(JSON_LIMITS.maxDepth + 1)), 'JSON nesting deeper than 64');
    assert.equal(jsonShapeProblem({ a: { b: [nested(100)] } }), 'JSON nesting deeper than 64');
    assert.match(jsonShapeProblem({ x: new Array(10_001).fill(0) }) ?? '', /array of more than 10,000 items/);
    const wide = Object.fromEntries(Array.from({ length: 1_001 }, (_, i) => [`k${i}`, i]));
    assert.match(jsonShapeProblem([wide]) ?? '', /object of more than 1,000 keys/);
  });

  it('walks 100,000 levels without overflowing the stack (iterative)', () => {
    assert.equal(jsonShapeProblem(nested(100_000), { ...JSON_LIMITS, maxDepth: 200_000 }), undefined);
    assert.equal(jsonShapeProblem(nested(100_000)), 'JSON nesting deeper than 64');
  });

  it('parseBoundedJson: SyntaxError for bad JSON, JsonShapeError for a hostile shape', () => {
    assert.deepEqual(parseBoundedJson('{"a":[1]}'), { a: [1] });
    assert.throws(() => parseBoundedJson('{'), SyntaxError);
    assert.throws(() => parseBoundedJson('['.repeat(5_000) + ']'.repeat(5_000)), JsonShapeError);
  });
});

describe('canonicalJson (response cache keys)', () => {
  it('sorts keys at every depth', () => {
    assert.equal(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":1}');
  });

  it('refuses a value deeper than the edge allows with a 400, not a RangeError', () => {
    assert.doesNotThrow(() => canonicalJson(nested(JSON_LIMITS.maxDepth)));
    assert.throws(
      () => canonicalJson(nested(5_000)),
      (err) => err instanceof AppError && err.status === 400 && /nesting deeper than 64/.test(err.message),
    );
  });
});
