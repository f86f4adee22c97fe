import { protocolError } from '../errors.js';
import { type HttpErrorMapper, postForText } from '../http.js';
import type { CallOptions, Embedding, EmbeddingRequest, EmbeddingResponse } from '../types.js';

export interface EmbeddingsCall {
  provider: string;
  url: URL;
  headers: Record<string, string>;
  body: EmbeddingRequest;
  options: CallOptions;
  secrets: readonly string[];
  mapError?: HttpErrorMapper | undefined;
}

/**
 * POST /embeddings in OpenAI's format (OpenAI, Azure, and OpenAI-compatible servers). The body goes as the
 * caller gave it (only `model` set by the route), so `encoding_format: base64` is answered by the upstream
 * itself and fields Colloquy does not model pass through.
 */
export async function postEmbeddings(call: EmbeddingsCall): Promise<EmbeddingResponse> {
  const text = await postForText({
    provider: call.provider,
    url: call.url,
    headers: call.headers,
    body: JSON.stringify(call.body),
    signal: call.options.signal,
    deadline: call.options.deadline,
    timeouts: call.options.timeouts,
    headersTimeoutMs: call.options.timeouts.firstTokenMs,
    secrets: call.secrets,
    mapError: call.mapError,
  });
  let parsed: Partial<EmbeddingResponse>;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError(call.provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  return normalizeEmbeddings(call.provider, parsed, call.body.model);
}

/** Checks an OpenAI-shaped embeddings answer and fills what some compatible servers leave out. */
export function normalizeEmbeddings(
  provider: string,
  parsed: Partial<EmbeddingResponse> | null,
  model: string,
): EmbeddingResponse {
  if (!parsed || !Array.isArray(parsed.data))
    throw protocolError(provider, 'no data in the embeddings answer');
  const data: Embedding[] = parsed.data.map((item, i) => {
    const embedding = (item as Partial<Embedding>)?.embedding;
    if (!(typeof embedding === 'string' || Array.isArray(embedding)))
      throw protocolError(provider, `embedding ${i} is neither a list of numbers nor base64`);
    return { object: 'embedding', index: typeof item.index === 'number' ? item.index : i, embedding };
  });
  const prompt = Number(parsed.usage?.prompt_tokens ?? 0);
  return {
    object: 'list',
    data,
    model: typeof parsed.model === 'string' ? parsed.model : model,
    usage: { prompt_tokens: prompt, total_tokens: Number(parsed.usage?.total_tokens ?? prompt) },
  };
}

/** Float vectors as OpenAI's base64 form: little-endian float32 bytes (for upstreams that only send floats). */
export function toBase64Embedding(vector: readonly number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  for (let i = 0; i < vector.length; i++) bytes.writeFloatLE(vector[i]!, i * 4);
  return bytes.toString('base64');
}
