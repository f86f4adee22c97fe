import { protocolError } from '../errors.js';
import { type HttpErrorMapper, postForText } from '../http.js';
import { toBase64Embedding } from '../openai/embeddings.js';
import type { CallOptions, EmbeddingRequest, EmbeddingResponse } from '../types.js';

/**
 * Vertex AI text embeddings (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api):
 * `POST …/publishers/google/models/{model}:predict` with `{instances:[{content}], parameters:{outputDimensionality}}`,
 * answered `{predictions:[{embeddings:{values, statistics:{token_count}}}]}`.
 */
export async function vertexEmbeddings(call: {
  provider: string;
  url: URL;
  headers: Record<string, string>;
  body: EmbeddingRequest;
  options: CallOptions;
  secrets: readonly string[];
  mapError: HttpErrorMapper;
}): Promise<EmbeddingResponse> {
  const { body, options } = call;
  const texts = (Array.isArray(body.input) ? body.input : [body.input]).map(String);
  const text = await postForText({
    provider: call.provider,
    url: call.url,
    headers: call.headers,
    body: JSON.stringify({
      instances: texts.map((content) => ({
        content,
        ...(typeof body.task_type === 'string' ? { task_type: body.task_type } : {}),
      })),
      ...(body.dimensions ? { parameters: { outputDimensionality: body.dimensions } } : {}),
    }),
    signal: options.signal,
    deadline: options.deadline,
    timeouts: options.timeouts,
    headersTimeoutMs: options.timeouts.firstTokenMs,
    secrets: call.secrets,
    mapError: call.mapError,
  });
  let parsed: {
    predictions?: { embeddings?: { values?: unknown; statistics?: { token_count?: number } } }[];
  };
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError(call.provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  const predictions = parsed.predictions ?? [];
  if (predictions.length !== texts.length)
    throw protocolError(call.provider, `${predictions.length} embeddings for ${texts.length} inputs`);
  let tokens = 0;
  const data = predictions.map((p, index) => {
    const values = p.embeddings?.values;
    if (!Array.isArray(values) || !values.every((x) => typeof x === 'number'))
      throw protocolError(call.provider, `embedding ${index} is not a list of numbers`);
    tokens += Number(p.embeddings?.statistics?.token_count ?? 0);
    return {
      object: 'embedding' as const,
      index,
      embedding: body.encoding_format === 'base64' ? toBase64Embedding(values) : values,
    };
  });
  return { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}
