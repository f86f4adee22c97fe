import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { structureOf } from './answers.js';
import { buildGuardrails } from './config.js';

describe('json_schema: what a structured answer must be', () => {
  const set = buildGuardrails([
    { name: 'structured', check: 'json_schema' },
    {
      name: 'fixed',
      check: 'json_schema',
      schema: { type: 'object', required: ['ok'], properties: { ok: { type: 'boolean' } } },
    },
  ]).value!;
  const [fromRequest, fixed] = set.structured as [(typeof set.structured)[0], (typeof set.structured)[0]];

  it('json_object: any JSON passes, anything else fails; no response_format: nothing to check', () => {
    const valid = structureOf(fromRequest, {
      model: 'm',
      messages: [],
      response_format: { type: 'json_object' },
    })!;
    assert.equal(valid('{"a": 1}'), true);
    assert.equal(valid('[1, 2]'), true);
    assert.equal(valid('Here you go: {"a": 1}'), false);
    assert.equal(structureOf(fromRequest, { model: 'm', messages: [] }), undefined);
  });

  it("a guardrail's own schema applies whatever the request asks", () => {
    const valid = structureOf(fixed, { model: 'm', messages: [] })!;
    assert.equal(valid('{"ok": true}'), true);
    assert.equal(valid('{"ok": "yes"}'), false);
  });

  it('a schema that does not compile is refused at configuration time', () => {
    const { problems } = buildGuardrails([{ name: 's', check: 'json_schema', schema: { type: 'nonsense' } }]);
    assert.match(problems.join('\n'), /schema: not a valid JSON Schema/);
  });
});
