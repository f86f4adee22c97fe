import { protocolError } from '../errors.js';
import {
  type HttpErrorMapper,
  parseJsonEvent,
  postForText,
  postJson,
  readSse,
  type UpstreamResponse,
} from '../http.js';
import type { CallOptions, ChatCompletion, ChatCompletionRequest, StreamEvent } from '../types.js';
import { toGeminiRequest } from './request.js';
import { fromGeminiResponse, GeminiStreamTranslator } from './response.js';
import type { GeminiResponse } from './wire.js';

/**
 * `generateContent` and `streamGenerateContent?alt=sse`, shared by the Gemini API and Vertex AI (same bodies,
 * other URLs and credentials).
 */
export interface GenerateTarget {
  provider: string;
  /** The URL of a method (`generateContent`, `streamGenerateContent`) of a model. */
  url(model: string, method: string): URL;
  headers(): Promise<Record<string, string>>;
  secrets(): string[];
  mapError: HttpErrorMapper;
}

export async function generateContent(
  target: GenerateTarget,
  body: ChatCompletionRequest,
  options: CallOptions,
): Promise<ChatCompletion> {
  const payload = toGeminiRequest(body, target.provider);
  const text = await postForText({
    provider: target.provider,
    url: target.url(body.model, 'generateContent'),
    headers: await target.headers(),
    body: JSON.stringify(payload),
    signal: options.signal,
    deadline: options.deadline,
    timeouts: options.timeouts,
    headersTimeoutMs: options.timeouts.firstTokenMs,
    mapError: target.mapError,
    secrets: target.secrets(),
  });
  let response: GeminiResponse;
  try {
    response = JSON.parse(text);
  } catch {
    throw protocolError(target.provider, `the answer is not JSON: ${text.slice(0, 100)}`);
  }
  return fromGeminiResponse(target.provider, response, body.model, options.requestId);
}

/**
 * Resolves once the first event has been read and translated: a blocked prompt or an answer filtered before
 * its first word is a 400 the caller gets from `stream()` itself (not a failure mid-stream), and an upstream
 * that accepts and then fails at once can still be retried.
 */
export async function streamGenerateContent(
  target: GenerateTarget,
  body: ChatCompletionRequest,
  options: CallOptions,
): Promise<AsyncIterable<StreamEvent>> {
  const startedAt = Date.now();
  const payload = toGeminiRequest(body, target.provider);
  const url = target.url(body.model, 'streamGenerateContent');
  url.searchParams.set('alt', 'sse');
  const response = await postJson({
    provider: target.provider,
    url,
    headers: { ...(await target.headers()), accept: 'text/event-stream' },
    body: JSON.stringify(payload),
    signal: options.signal,
    deadline: options.deadline,
    timeouts: options.timeouts,
    headersTimeoutMs: options.timeouts.firstTokenMs,
    mapError: target.mapError,
    secrets: target.secrets(),
  });
  const translator = new GeminiStreamTranslator(target.provider, body.model, options.requestId);
  const events = relayGeminiStream(target, response, translator, { ...options, startedAt });
  const first = await events.next().catch(async (err) => {
    await events.return(undefined);
    throw err;
  });
  return prepend(first, events);
}

async function* prepend(
  first: IteratorResult<StreamEvent>,
  rest: AsyncGenerator<StreamEvent>,
): AsyncGenerator<StreamEvent> {
  try {
    if (first.done) return;
    yield first.value;
    yield* rest;
  } finally {
    // A consumer that stops at the first event still releases the upstream body (readSse's own finally).
    await rest.return(undefined);
  }
}

async function* relayGeminiStream(
  target: GenerateTarget,
  response: UpstreamResponse,
  translator: GeminiStreamTranslator,
  options: CallOptions & { startedAt: number },
): AsyncGenerator<StreamEvent> {
  for await (const message of readSse(target.provider, response.body, options)) {
    const event = parseJsonEvent<GeminiResponse & { error?: unknown }>(target.provider, message.data);
    if (!event || typeof event !== 'object')
      throw protocolError(target.provider, 'a stream event that is not an object');
    // An error after the stream began comes as an event of Google's error shape.
    if (event.error) throw target.mapError(500, message.data, () => undefined);
    for (const chunk of translator.push(event)) yield { chunk };
  }
  // No [DONE] in Gemini's streams: the connection closing is the end.
  for (const chunk of translator.end()) yield { chunk };
}
