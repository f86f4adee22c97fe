import { toBase64Embedding } from '../../providers/openai/embeddings.js';
import type { EmbeddingResponse } from '../../providers/types.js';

/** A base64 embedding (little-endian float32 bytes, OpenAI's encoding) as numbers. */
export function fromBase64Embedding(text: string): number[] {
  const bytes = Buffer.from(text, 'base64');
  const out = new Array<number>(bytes.length >> 2);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/**
 * Answers in the encoding the client asked for, whatever the upstream sent: some OpenAI-compatible servers
 * ignore `encoding_format` and send floats, and the `openai` SDK, which asks for base64 by default, would
 * then decode a list of numbers as base64 and hand its user garbage.
 */
export function inEncoding(response: EmbeddingResponse, format: 'float' | 'base64'): EmbeddingResponse {
  const wanted = format === 'base64' ? 'string' : 'object';
  if (response.data.every((item) => typeof item.embedding === wanted)) return response;
  return {
    ...response,
    data: response.data.map((item) => ({
      ...item,
      embedding:
        format === 'base64'
          ? typeof item.embedding === 'string'
            ? item.embedding
            : toBase64Embedding(item.embedding)
          : typeof item.embedding === 'string'
            ? fromBase64Embedding(item.embedding)
            : item.embedding,
    })),
  };
}
