import { ProviderError, protocolError } from '../errors.js';
import { toBase64Embedding } from '../openai/embeddings.js';
import type { CallOptions, Embedding, EmbeddingRequest, EmbeddingResponse } from '../types.js';

/** POSTs one InvokeModel body for the embedding model and returns the answer's text. */
export type Invoke = (payload: string) => Promise<string>;

const invalid = (provider: string, message: string, param: string) =>
  new ProviderError(message, {
    provider,
    status: 400,
    code: 'invalid_request',
    type: 'invalid_request_error',
    param,
    retryable: false,
  });

/**
 * Embeddings through InvokeModel, in each model family's own body:
 * - Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html):
 *   one text per call, `{inputText, dimensions, normalize}` → `{embedding, inputTextTokenCount}`; calls run
 *   one after another, so a long list does not burst the account's request quota.
 * - Cohere Embed (`cohere.embed-*`, https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html):
 *   `{texts, input_type}` → `{embeddings}` (no token counts: usage is 0).
 */
export async function embedWithBedrock(
  provider: string,
  body: EmbeddingRequest,
  _options: CallOptions,
  invoke: Invoke,
): Promise<EmbeddingResponse> {
  const inputs = typeof body.input === 'string' ? [body.input] : body.input;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((i) => typeof i === 'string'))
    throw invalid(
      provider,
      'Bedrock embedding models take text input (a string or a list of strings)',
      'input',
    );
  const texts = inputs as string[];
  const vectors: number[][] = [];
  let tokens = 0;
  const model = body.model.replace(/^arn:.*\//, '');
  if (/(^|\.)cohere\.embed/.test(model)) {
    const inputType = typeof body.input_type === 'string' ? body.input_type : 'search_document';
    const answer = parse(provider, await invoke(JSON.stringify({ texts, input_type: inputType })));
    const embeddings = (answer as { embeddings?: unknown }).embeddings;
    const floats = Array.isArray(embeddings)
      ? embeddings
      : (embeddings as { float?: unknown } | undefined)?.float;
    if (!Array.isArray(floats) || floats.length !== texts.length)
      throw protocolError(provider, 'the Cohere answer has no embeddings for every text');
    vectors.push(...(floats as number[][]));
  } else if (/(^|\.)amazon\.titan-embed/.test(model)) {
    for (const inputText of texts) {
      const payload: Record<string, unknown> = { inputText };
      // dimensions and normalize are Titan v2's (v1 takes inputText alone).
      if (/titan-embed-text-v2/.test(model)) {
        payload.normalize = true;
        if (typeof body.dimensions === 'number') payload.dimensions = body.dimensions;
      }
      const answer = parse(provider, await invoke(JSON.stringify(payload))) as {
        embedding?: unknown;
        inputTextTokenCount?: unknown;
      };
      if (!Array.isArray(answer.embedding))
        throw protocolError(provider, 'the Titan answer has no embedding');
      vectors.push(answer.embedding as number[]);
      tokens += typeof answer.inputTextTokenCount === 'number' ? answer.inputTextTokenCount : 0;
    }
  } else {
    throw invalid(
      provider,
      `${body.model} is not an embedding model Colloquy knows on Bedrock (amazon.titan-embed-*, cohere.embed-*)`,
      'model',
    );
  }
  const base64 = body.encoding_format === 'base64';
  const data: Embedding[] = vectors.map((v, index) => ({
    object: 'embedding',
    index,
    embedding: base64 ? toBase64Embedding(v) : v,
  }));
  return { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}

function parse(provider: string, text: string): object {
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === 'object') return parsed;
  } catch {}
  throw protocolError(provider, `the answer is not a JSON object: ${text.slice(0, 100)}`);
}
