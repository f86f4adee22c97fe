import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withModel } from './raw-request.js';

/** What the rewrite must equal: the parsed body with the model replaced, and nothing else of the text moved. */
function assertRewritten(text: string, model: string, expected: string) {
  const out = withModel(text, model);
  assert.equal(out, expected);
  assert.deepEqual(JSON.parse(out!), { ...JSON.parse(text), model });
}

describe('withModel: the client JSON with only its top-level model replaced', () => {
  it('replaces the value wherever the key is, keeping every other byte (spacing, number spellings)', () => {
    assertRewritten('{"model":"a","messages":[]}', 'b', '{"model":"b","messages":[]}');
    assertRewritten(
      '{ "messages" : [ {"role":"user","content":"hi"} ] ,\n\t"model" :  "a" , "n":1.0, "seed": 12345678901234567890 }',
      'gpt-4o',
      '{ "messages" : [ {"role":"user","content":"hi"} ] ,\n\t"model" :  "gpt-4o" , "n":1.0, "seed": 12345678901234567890 }',
    );
  });

  it('is not fooled by "model" inside strings or nested objects', () => {
    const text =
      '{"messages":[{"role":"user","content":"\\"model\\":\\"evil\\", {\\"model\\":\\"x\\"}"}],' +
      '"tools":[{"type":"function","function":{"name":"f","parameters":{"model":{"type":"string"}}}}],' +
      '"metadata":{"model":"kept"},"model":"a\\\\","user":"model"}';
    const out = withModel(text, 'up');
    assert.ok(out);
    const parsed = JSON.parse(out);
    assert.equal(parsed.model, 'up');
    assert.equal(parsed.metadata.model, 'kept');
    assert.equal(parsed.user, 'model');
    assert.equal(parsed.messages[0].content, '"model":"evil", {"model":"x"}');
    assert.deepEqual(parsed.tools, JSON.parse(text).tools);
    assert.equal(out, text.replace('"model":"a\\\\"', '"model":"up"'));
  });

  it('decodes keys: an escaped spelling of model is the model', () => {
    assertRewritten('{"mod\\u0065l":"a","x":"\\u006d"}', 'b', '{"mod\\u0065l":"b","x":"\\u006d"}');
  });

  it('finds a repeated key in a wide object too (past the short list, in a Set)', () => {
    const wide = Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`).join(',');
    assertRewritten(`{"model":"a","metadata":{${wide}}}`, 'b', `{"model":"b","metadata":{${wide}}}`);
    assert.equal(withModel(`{"model":"a","metadata":{${wide},"k3":0}}`, 'b'), undefined);
    assert.equal(withModel(`{"model":"a","metadata":{${wide},"k39":0}}`, 'b'), undefined);
    // Sibling objects do not share keys: the same key in two messages is no repeat.
    const two = '{"model":"a","messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}';
    assertRewritten(two, 'b', two.replace('"a"', '"b"'));
  });

  it('escapes the new model as JSON', () => {
    assertRewritten('{"model":"a"}', 'we"ird\\mo\ndel', '{"model":"we\\"ird\\\\mo\\ndel"}');
  });

  it('declines what it cannot rewrite exactly, so the body is serialized instead', () => {
    for (const text of [
      '{"model":"a","model":"b"}', // JSON.parse keeps the last; an upstream may read the first
      '{"model":"a","mod\\u0065l":"b"}',
      '{"model":"a","messages":[{"role":"user","content":"x","content":"y"}]}', // any repeated key
      '{"messages":[]}', // no model
      '{"model":42}',
      '{"model":null}',
      '[{"model":"a"}]',
      '"model"',
      `${'['.repeat(300)}${']'.repeat(300)}`,
      `{"model":"a","x":${'['.repeat(300)}${']'.repeat(300)}}`,
      '\uFEFF{"model":"a"}',
    ])
      assert.equal(withModel(text, 'b'), undefined, text.slice(0, 60));
  });
});
