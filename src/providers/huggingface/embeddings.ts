import { protocolError } from '../errors.js';
import { joinUrl, postJson } from '../http.js';
import { toBase64Embedding } from '../openai/embeddings.js';
import { countTexts } from '../tokens.js';
import type { CallOptions, EmbeddingRequest, EmbeddingResponse } from '../types.js';

/** Hugging Face's hosted feature extraction: a Text Embeddings Inference server per model, behind the router. */
export const HF_EMBEDDINGS_URL =
  'https://router.huggingface.co/hf-inference/models/{model}/pipeline/feature-extraction';

/**
 * The URL of a Text Embeddings Inference call. A template with `{model}` (the router's hosted models) gets
 * the model id with each path segment encoded and its `/` kept (`BAAI/bge-small-en-v1.5`); any other URL is
 * a TEI server of the operator's, whose route is `/embed`.
 */
export function teiUrl(base: string, model: string): URL {
  if (base.includes('{model}')) {
    return new URL(base.replace('{model}', model.split('/').map(encodeURIComponent).join('/')));
  }
  return new URL(joinUrl(base, 'embed'));
}

/**
 * Embeddings from Text Embeddings Inference's native route (https://huggingface.github.io/text-embeddings-
 * inference/): `{ inputs, normalize, dimensions }` answered by a bare list of float vectors. Mapped to OpenAI's
 * answer: base64 is encoded here (TEI sends floats only); usage from TEI's `x-compute-tokens` header, else
 * counted here.
 */
export async function teiEmbeddings(call: {
  provider: string;
  url: URL;
  headers: Record<string, string>;
  body: EmbeddingRequest;
  options: CallOptions;
  secrets: readonly string[];
}): Promise<EmbeddingResponse> {
  const { body, options } = call;
  const response = await postJson({
    provider: call.provider,
    url: call.url,
    headers: call.headers,
    body: JSON.stringify({
      inputs: body.input,
      normalize: true,
      ...(body.dimensions ? { dimensions: body.dimensions } : {}),
    }),
    signal: options.signal,
    deadline: options.deadline,
    timeouts: options.timeouts,
    headersTimeoutMs: options.timeouts.firstTokenMs,
    secrets: call.secrets,
  });
  const text = await response.body.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError(call.provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  // One input may come back as one vector rather than a list of one.
  const vectors = Array.isArray(parsed) && typeof parsed[0] === 'number' ? [parsed] : parsed;
  if (
    !Array.isArray(vectors) ||
    !vectors.every((v) => Array.isArray(v) && v.every((x) => typeof x === 'number'))
  )
    throw protocolError(call.provider, 'the embeddings answer is not a list of vectors');
  const header = response.headers['x-compute-tokens'];
  const counted = Number(Array.isArray(header) ? header[0] : header);
  const tokens = Number.isFinite(counted) && header !== undefined ? counted : await inputTokens(body.input);
  return {
    object: 'list',
    data: (vectors as number[][]).map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: body.encoding_format === 'base64' ? toBase64Embedding(vector) : vector,
    })),
    model: body.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

async function inputTokens(input: EmbeddingRequest['input']): Promise<number> {
  if (typeof input === 'string') return (await countTexts([input]))[0]!;
  if (input.length === 0) return 0;
  if (typeof input[0] === 'number') return input.length; // token ids
  if (Array.isArray(input[0])) return (input as number[][]).reduce((sum, ids) => sum + ids.length, 0);
  return (await countTexts(input as string[])).reduce((sum, n) => sum + n, 0);
}
