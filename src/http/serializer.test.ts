import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';
import Type from 'typebox';
import { buildSerializer, plainUnions } from './serializer.js';

const Message = Type.Object({
  id: Type.String(),
  role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]),
  parent_id: Type.Union([Type.String(), Type.Null()]),
  tokens: Type.Union([Type.Integer(), Type.Null()]),
  usage: Type.Union([Type.Object({ total: Type.Integer() }), Type.Null()]),
  parts: Type.Array(Type.Union([Type.String(), Type.Null()])),
  content: Type.Union([Type.String(), Type.Array(Type.Object({ text: Type.String() }))]),
  tool: Type.Union([Type.Object({ name: Type.String() }), Type.Object({ call: Type.Integer() })]),
});
const route = { method: 'GET', url: '/m', httpStatus: '200', schema: Message };
const values = [
  {
    id: 'm1',
    role: 'user',
    parent_id: null,
    tokens: null,
    usage: null,
    parts: ['a', null],
    content: 'hi',
    tool: { name: 'x' },
    secret: 'dropped',
  },
  {
    id: 'm2',
    role: 'assistant',
    parent_id: 'm1',
    tokens: 12,
    usage: { total: 3, extra: 'dropped' },
    parts: [],
    content: [{ text: 'a' }],
    tool: { call: 2 },
  },
];

describe('response serialization', () => {
  it('writes type unions exactly as the default serializer does', () => {
    const ours = buildSerializer()(route);
    const theirs = SerializerSelector()()(route);
    for (const value of values) assert.equal(ours(value), theirs(value));
    assert.deepEqual(JSON.parse(ours(values[1])).usage, { total: 3 });
  });

  it('needs no validator for unions told apart by type, and keeps one for two object shapes', () => {
    const plain = plainUnions(Message) as { properties: Record<string, Record<string, unknown>> };
    const p = plain.properties;
    assert.deepEqual(p.role, { type: 'string' });
    assert.deepEqual(p.parent_id, { type: ['string', 'null'] });
    assert.equal(p.usage!.anyOf, undefined);
    assert.deepEqual(p.usage!.type, ['object', 'null']);
    assert.deepEqual(p.parts, { type: 'array', items: { type: ['string', 'null'] } });
    assert.equal((p.content!.anyOf as unknown[]).length, 2, 'a string or an array keeps its validator');
    assert.equal((p.tool!.anyOf as unknown[]).length, 2, 'two object shapes keep theirs');
  });

  it('still refuses a value of no listed type', () => {
    const serialize = buildSerializer()(route);
    assert.throws(() => serialize({ ...values[0], parent_id: 5 }), TypeError);
  });
});
