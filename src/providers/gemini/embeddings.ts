import { ProviderError, protocolError } from '../errors.js';
import { type HttpErrorMapper, postForText } from '../http.js';
import { toBase64Embedding } from '../openai/embeddings.js';
import { countTexts } from '../tokens.js';
import type { CallOptions, EmbeddingRequest, EmbeddingResponse } from '../types.js';

/**
 * Embeddings through Gemini's `models/{model}:embedContent` (one text) and `:batchEmbedContents` (several)
 * (https://ai.google.dev/api/embeddings). `dimensions` is `outputDimensionality`; Gemini-only
 * `task_type` / `title` fields a client sends pass through as `taskType` / `title`. Gemini returns no token
 * count, so usage is Colloquy's own count of the inputs.
 */
export async function geminiEmbeddings(call: {
  provider: string;
  url: (method: 'embedContent' | 'batchEmbedContents') => URL;
  /** The resource name Gemini wants inside each batch request: `models/{model}`. */
  resource: string;
  headers: Record<string, string>;
  body: EmbeddingRequest;
  options: CallOptions;
  secrets: readonly string[];
  mapError: HttpErrorMapper;
}): Promise<EmbeddingResponse> {
  const { body, options } = call;
  const texts = inputTexts(call.provider, body.input);
  const extra = {
    ...(body.dimensions ? { outputDimensionality: body.dimensions } : {}),
    ...(typeof body.task_type === 'string' ? { taskType: body.task_type } : {}),
    ...(typeof body.title === 'string' ? { title: body.title } : {}),
  };
  const single = typeof body.input === 'string';
  const payload = single
    ? { content: { parts: [{ text: texts[0] }] }, ...extra }
    : {
        requests: texts.map((text) => ({
          model: call.resource,
          content: { parts: [{ text }] },
          ...extra,
        })),
      };
  const text = await postForText({
    provider: call.provider,
    url: call.url(single ? 'embedContent' : 'batchEmbedContents'),
    headers: call.headers,
    body: JSON.stringify(payload),
    signal: options.signal,
    deadline: options.deadline,
    timeouts: options.timeouts,
    headersTimeoutMs: options.timeouts.firstTokenMs,
    secrets: call.secrets,
    mapError: call.mapError,
  });
  let parsed: { embedding?: { values?: unknown }; embeddings?: { values?: unknown }[] };
  try {
    parsed = JSON.parse(text);
  } catch {
    throw protocolError(call.provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  const vectors = single ? [parsed.embedding] : (parsed.embeddings ?? []);
  if (vectors.length !== texts.length)
    throw protocolError(call.provider, `${vectors.length} embeddings for ${texts.length} inputs`);
  const tokens = (await countTexts(texts)).reduce((a, b) => a + b, 0);
  return {
    object: 'list',
    data: vectors.map((v, index) => {
      const values = v?.values;
      if (!Array.isArray(values) || !values.every((x) => typeof x === 'number'))
        throw protocolError(call.provider, `embedding ${index} is not a list of numbers`);
      return {
        object: 'embedding' as const,
        index,
        embedding: body.encoding_format === 'base64' ? toBase64Embedding(values) : values,
      };
    }),
    model: body.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

function inputTexts(provider: string, input: EmbeddingRequest['input']): string[] {
  const list = Array.isArray(input) ? input : [input];
  if (!list.every((x) => typeof x === 'string'))
    throw new ProviderError('Gemini embeddings take text, not token ids', {
      provider,
      status: 400,
      code: 'invalid_request',
      type: 'invalid_request_error',
      param: 'input',
      retryable: false,
    });
  return list as string[];
}
