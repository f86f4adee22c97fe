import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toBase64Embedding } from '../../providers/openai/embeddings.js';
import type { EmbeddingResponse } from '../../providers/types.js';
import { fromBase64Embedding, inEncoding } from './encoding.js';

const answer = (embedding: number[] | string): EmbeddingResponse => ({
  object: 'list',
  data: [{ object: 'embedding', index: 0, embedding }],
  model: 'm',
  usage: { prompt_tokens: 1, total_tokens: 1 },
});

describe('embeddings in the encoding the client asked for', () => {
  // Values exact in float32, so the round trip is exact.
  const vector = [0.5, -1.25, 3, 0];

  it('floats from an upstream that ignored encoding_format base64 are sent as base64', () => {
    const out = inEncoding(answer(vector), 'base64');
    assert.equal(out.data[0]!.embedding, toBase64Embedding(vector));
    assert.deepEqual(fromBase64Embedding(out.data[0]!.embedding as string), vector);
  });

  it('base64 from the upstream is decoded when the client asked for floats', () => {
    assert.deepEqual(inEncoding(answer(toBase64Embedding(vector)), 'float').data[0]!.embedding, vector);
  });

  it('an answer already in the right encoding is returned as is', () => {
    const given = answer(vector);
    assert.equal(inEncoding(given, 'float'), given);
  });
});
