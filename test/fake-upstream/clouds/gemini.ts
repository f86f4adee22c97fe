import type http from 'node:http';
import { type FakeServer, type RecordedRequest, sendJson, startServer } from './wire.js';

/**
 * A fake Gemini API, written from Google's published references:
 * - Generating content (https://ai.google.dev/api/generate-content): `POST /v1beta/models/{model}:generateContent`
 *   and `:streamGenerateContent`; with `?alt=sse` the stream is server-sent events, each `data:` a whole
 *   GenerateContentResponse, and NO `[DONE]`: the stream ends when the connection closes. Candidates carry
 *   `content.parts` (text, functionCall with whole `args`), `finishReason` (STOP, MAX_TOKENS, SAFETY…);
 *   `promptFeedback.blockReason` with no candidates for a blocked prompt; `usageMetadata` (promptTokenCount,
 *   candidatesTokenCount, thoughtsTokenCount, totalTokenCount), cumulative in every stream event.
 * - Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures): the first functionCall part of
 *   a response carries `thoughtSignature` (parallel calls: only the first); a text answer carries it on its last
 *   part. On the next request, the first functionCall of each model step of the current turn (after the last
 *   user text) must carry its signature back, or the API answers 400 INVALID_ARGUMENT; the documented
 *   placeholder `skip_thought_signature_validator` is accepted.
 * - Embeddings (https://ai.google.dev/api/embeddings): `:embedContent` `{content, outputDimensionality}` →
 *   `{embedding:{values}}`; `:batchEmbedContents` `{requests:[{model:"models/…", content}]}` → `{embeddings:[…]}`.
 * - Errors (https://ai.google.dev/gemini-api/docs/troubleshooting): `{"error":{"code","message","status",
 *   "details"}}`; a wrong key is 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID, a missing one 403
 *   PERMISSION_DENIED; quota is 429 RESOURCE_EXHAUSTED with a google.rpc.RetryInfo `retryDelay`; 503 UNAVAILABLE.
 *   The key travels in the `x-goog-api-key` header.
 *
 * The model's behaviour is scripted by the last user text: "weather" with tools → two parallel function calls;
 * "blocked" → a blocked prompt; "unsafe" → finishReason SAFETY before any text; "long" → MAX_TOKENS.
 */
export type GoogleFault =
  | { kind: 'throttle'; retryDelay: string }
  | { kind: 'unavailable' }
  | { kind: 'internal' }
  /** The stream's first event, then the connection closes (no finishReason ever comes). */
  | { kind: 'truncated' };

export interface FakeGemini extends FakeServer {
  faults: GoogleFault[];
  /** Signatures the fake issued, in order. */
  signatures: string[];
}

export const GEMINI_USAGE = {
  promptTokenCount: 10,
  candidatesTokenCount: 6,
  thoughtsTokenCount: 4,
  totalTokenCount: 20,
};

interface Part {
  text?: string;
  thought?: boolean;
  thoughtSignature?: string;
  functionCall?: { name: string; args?: unknown };
  functionResponse?: { name: string; response: unknown };
  inlineData?: { mimeType: string; data: string };
}
interface Content {
  role?: string;
  parts: Part[];
}

export function googleError(
  res: http.ServerResponse,
  code: number,
  status: string,
  message: string,
  details: unknown[] = [],
) {
  sendJson(res, code, { error: { code, message, status, ...(details.length ? { details } : {}) } });
}

export function sendFault(res: http.ServerResponse, fault: Exclude<GoogleFault, { kind: 'truncated' }>) {
  if (fault.kind === 'throttle')
    return googleError(
      res,
      429,
      'RESOURCE_EXHAUSTED',
      'You exceeded your current quota, please check your plan and billing details.',
      [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [
            { quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests' },
          ],
        },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: fault.retryDelay },
      ],
    );
  if (fault.kind === 'unavailable')
    return googleError(res, 503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');
  return googleError(res, 500, 'INTERNAL', 'An internal error has occurred.');
}

/**
 * The scripted model, shared with the Vertex fake: checks the request as Gemini does and returns the answer as a
 * list of stream events (the non-streaming answer is their merge), or an error to send.
 */
export function geminiAnswer(
  model: string,
  body: Record<string, unknown>,
  signatures: string[],
): { events: Record<string, unknown>[] } | { error: [number, string, string] } {
  const contents = body.contents as Content[] | undefined;
  if (!Array.isArray(contents) || !contents.length)
    return {
      error: [400, 'INVALID_ARGUMENT', '* GenerateContentRequest.contents: contents is not specified'],
    };
  // Gemini's Schema rejects JSON-schema keywords it does not know.
  const declared = JSON.stringify(body.tools ?? []);
  for (const banned of ['additionalProperties', '$schema', '"strict"'])
    if (declared.includes(banned))
      return {
        error: [
          400,
          'INVALID_ARGUMENT',
          `Invalid JSON payload received. Unknown name "${banned}" at 'tools[0].function_declarations[0].parameters': Cannot find field.`,
        ],
      };
  const missing = missingSignature(contents, signatures);
  if (missing) return { error: [400, 'INVALID_ARGUMENT', missing] };
  const last = contents.at(-1)!;
  const userText = last.parts.map((p) => p.text ?? '').join('');
  const usage = (n: number) => ({ ...GEMINI_USAGE, candidatesTokenCount: n, totalTokenCount: 14 + n });
  const candidate = (parts: Part[], finishReason?: string) => ({
    content: { role: 'model', parts },
    ...(finishReason ? { finishReason } : {}),
    index: 0,
  });
  const meta = { modelVersion: model, responseId: 'resp-fake-1' };
  const sign = () => {
    const sig = `sig-${signatures.length + 1}-${Buffer.from(model).toString('base64')}`;
    signatures.push(sig);
    return sig;
  };
  if (/blocked/.test(userText))
    return {
      events: [
        {
          promptFeedback: { blockReason: 'PROHIBITED_CONTENT' },
          usageMetadata: { promptTokenCount: 10, totalTokenCount: 10 },
          ...meta,
        },
      ],
    };
  if (/unsafe/.test(userText))
    return {
      events: [
        {
          candidates: [
            {
              ...candidate([]),
              finishReason: 'SAFETY',
              safetyRatings: [
                { category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true },
              ],
            },
          ],
          usageMetadata: usage(0),
          ...meta,
        },
      ],
    };
  if (last.parts.some((p) => p.functionResponse)) {
    const results = last.parts
      .filter((p) => p.functionResponse)
      .map((p) => JSON.stringify(p.functionResponse!.response));
    return {
      events: [
        { candidates: [candidate([{ text: 'Paris and London: ' }])], usageMetadata: usage(4), ...meta },
        {
          candidates: [candidate([{ text: results.join(' / '), thoughtSignature: sign() }], 'STOP')],
          usageMetadata: usage(6),
          ...meta,
        },
      ],
    };
  }
  if (/weather/i.test(userText) && body.tools) {
    return {
      events: [
        {
          candidates: [
            candidate([
              {
                functionCall: { name: 'get_weather', args: { location: 'Paris', unit: 'celsius' } },
                thoughtSignature: sign(),
              },
            ]),
          ],
          usageMetadata: usage(3),
          ...meta,
        },
        {
          candidates: [
            candidate([{ functionCall: { name: 'get_weather', args: { location: 'London' } } }], 'STOP'),
          ],
          usageMetadata: usage(6),
          ...meta,
        },
      ],
    };
  }
  if (/long/.test(userText))
    return {
      events: [
        {
          candidates: [candidate([{ text: 'It was a dark and' }], 'MAX_TOKENS')],
          usageMetadata: usage(5),
          ...meta,
        },
      ],
    };
  return {
    events: [
      { candidates: [candidate([{ text: 'Hello ' }])], usageMetadata: usage(1), ...meta },
      { candidates: [candidate([{ text: 'from Gemini ' }])], usageMetadata: usage(3), ...meta },
      {
        candidates: [candidate([{ text: `${model}.` }, { text: '', thoughtSignature: sign() }], 'STOP')],
        usageMetadata: usage(6),
        ...meta,
      },
    ],
  };
}

/** The validation the thought-signature page describes, for the current turn only. */
function missingSignature(contents: Content[], issued: string[]): string | undefined {
  let start = 0;
  contents.forEach((c, i) => {
    if (c.role === 'user' && c.parts.some((p) => typeof p.text === 'string')) start = i;
  });
  for (const [i, c] of contents.entries()) {
    if (i < start || c.role !== 'model') continue;
    const first = c.parts.find((p) => p.functionCall);
    if (!first) continue;
    const sig = first.thoughtSignature;
    if (sig !== 'skip_thought_signature_validator' && !(sig && issued.includes(sig)))
      return `Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call \`default_api:${first.functionCall!.name}\` , position ${i + 1}.`;
  }
  return undefined;
}

/** Merges stream events into the one answer generateContent returns. */
export function mergeEvents(events: Record<string, unknown>[]): Record<string, unknown> {
  type C = { content: Content; finishReason?: string };
  const last = events.at(-1)!;
  const candidates = events.flatMap((e) => (e.candidates as C[] | undefined) ?? []);
  if (!candidates.length) return last;
  const parts = candidates.flatMap((c) => c.content.parts);
  return {
    ...last,
    candidates: [{ ...candidates.at(-1), content: { role: 'model', parts } }],
  };
}

export function sendAnswer(
  res: http.ServerResponse,
  req: RecordedRequest,
  events: Record<string, unknown>[],
  stream: boolean,
) {
  if (!stream) return sendJson(res, 200, mergeEvents(events));
  if (req.query.get('alt') === 'sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    // Google frames each event as `data: {json}\r\n\r\n`; the end is the connection closing.
    for (const event of events) res.write(`data: ${JSON.stringify(event)}\r\n\r\n`);
    res.end();
    return;
  }
  // Without alt=sse the stream is one JSON array written piece by piece.
  sendJson(res, 200, events);
}

export function embeddings(
  res: http.ServerResponse,
  method: string,
  body: Record<string, unknown>,
  model: string,
) {
  const vector = (text: string, dims?: number) =>
    Array.from({ length: (dims as number) || 8 }, (_, i) => ((text.length + i) % 10) / 10);
  const textOf = (c: unknown) => ((c as Content | undefined)?.parts ?? []).map((p) => p.text ?? '').join('');
  if (method === 'embedContent')
    return sendJson(res, 200, {
      embedding: { values: vector(textOf(body.content), body.outputDimensionality as number) },
    });
  const requests = (body.requests as Record<string, unknown>[] | undefined) ?? [];
  if (requests.some((r) => r.model !== `models/${model}`))
    return googleError(
      res,
      400,
      'INVALID_ARGUMENT',
      'Model in each request must match the model in the URL.',
    );
  return sendJson(res, 200, {
    embeddings: requests.map((r) => ({
      values: vector(textOf(r.content), r.outputDimensionality as number),
    })),
  });
}

export async function startFakeGemini(options: { apiKey: string }): Promise<FakeGemini> {
  const state = { faults: [] as GoogleFault[], signatures: [] as string[] };
  const handler = (req: RecordedRequest, res: http.ServerResponse) => {
    const key = req.headers['x-goog-api-key'];
    if (!key)
      return googleError(
        res,
        403,
        'PERMISSION_DENIED',
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
      );
    if (key !== options.apiKey)
      return googleError(
        res,
        400,
        'INVALID_ARGUMENT',
        `API key not valid. Please pass a valid API key. (${key})`,
        [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'API_KEY_INVALID',
            domain: 'googleapis.com',
          },
        ],
      );
    if (req.method === 'GET' && req.path === '/v1beta/models')
      return sendJson(res, 200, { models: [{ name: 'models/gemini-2.5-flash' }] });
    const route =
      /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent|embedContent|batchEmbedContents)$/.exec(
        req.path,
      );
    if (req.method !== 'POST' || !route)
      return googleError(res, 404, 'NOT_FOUND', `Requested entity was not found.`);
    const model = decodeURIComponent(route[1]!);
    if (!/^(gemini|text-embedding|gemini-embedding)/.test(model))
      return googleError(
        res,
        404,
        'NOT_FOUND',
        `models/${model} is not found for API version v1beta, or is not supported for generateContent.`,
      );
    const fault = state.faults.shift();
    const method = route[2]!;
    if (fault && fault.kind !== 'truncated') return sendFault(res, fault);
    if (method === 'embedContent' || method === 'batchEmbedContents')
      return embeddings(res, method, req.body, model);
    const answer = geminiAnswer(model, req.body, state.signatures);
    if ('error' in answer) return googleError(res, ...answer.error);
    const events = fault?.kind === 'truncated' ? answer.events.slice(0, 1) : answer.events;
    return sendAnswer(res, req, events, method === 'streamGenerateContent');
  };
  const server = await startServer(handler);
  return Object.assign(server, state);
}
