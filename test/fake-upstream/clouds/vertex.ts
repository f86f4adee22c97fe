import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { type CryptoKey, type JWTPayload, jwtVerify } from 'jose';
import { type GoogleFault, geminiAnswer, googleError, sendAnswer, sendFault } from './gemini.js';
import { type FakeServer, type RecordedRequest, sendJson, startServer } from './wire.js';

/**
 * A fake Vertex AI, Google OAuth token endpoint and GCE metadata server, written from Google's references:
 * - Inference (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference):
 *   `POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent` and
 *   `:streamGenerateContent?alt=sse`, the Gemini API's bodies (the scripted model is the Gemini fake's);
 *   `Authorization: Bearer {access token}`, else 401 UNAUTHENTICATED.
 * - Anthropic's models (https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude):
 *   `…/publishers/anthropic/models/{model}:rawPredict` / `:streamRawPredict`, Anthropic's Messages body with
 *   `anthropic_version: "vertex-2023-10-16"` and no `model`; the answers are Anthropic's Messages API bodies and
 *   events (https://docs.anthropic.com/en/api/messages, .../messages-streaming): a request that offers tools is
 *   answered with Anthropic's published tool-use example (src/providers/anthropic/fixtures), whole or streamed.
 * - Text embeddings (https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api):
 *   `:predict` `{instances:[{content}], parameters:{outputDimensionality}}`.
 * - Service-account tokens (https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
 *   `POST /token`, form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion={RS256 JWT}`; the
 *   assertion's signature is checked against the service account's public key, and its claims: iss (the
 *   client_email), scope, aud (the token_uri), iat/exp (at most an hour). Answer `{access_token, expires_in,
 *   token_type: "Bearer"}`; a bad assertion is 400 `{error: "invalid_grant"}`.
 * - Metadata server (https://cloud.google.com/compute/docs/metadata/querying-metadata):
 *   `GET /computeMetadata/v1/instance/service-accounts/default/token` with `Metadata-Flavor: Google` (else 403).
 */
/** One of Anthropic's published examples (src/providers/anthropic/fixtures/README.md). */
const anthropicExample = (name: string) =>
  readFileSync(new URL(`../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');

export interface FakeVertexOptions {
  project: string;
  location: string;
  clientEmail: string;
  publicKey: CryptoKey;
  lifetimeSeconds: number;
  now: () => number;
}

export interface FakeVertex extends FakeServer {
  faults: GoogleFault[];
  signatures: string[];
  tokensIssued: number;
  /** Calls refused for a missing, unknown or expired token. */
  refused: RecordedRequest[];
  /** The last verified assertion's claims. */
  claims: JWTPayload | undefined;
}

export async function startFakeVertex(options: FakeVertexOptions): Promise<FakeVertex> {
  const tokens = new Map<string, number>();
  const state = {
    faults: [] as GoogleFault[],
    signatures: [] as string[],
    tokensIssued: 0,
    refused: [] as RecordedRequest[],
    claims: undefined as JWTPayload | undefined,
  };
  let url = '';
  const issue = (res: http.ServerResponse) => {
    state.tokensIssued++;
    const value = `ya29.fake-vertex-token-${state.tokensIssued}`;
    tokens.set(value, options.now() + options.lifetimeSeconds * 1000);
    sendJson(res, 200, { access_token: value, expires_in: options.lifetimeSeconds, token_type: 'Bearer' });
  };

  const handler = async (req: RecordedRequest, res: http.ServerResponse) => {
    if (req.method === 'POST' && req.path === '/token') return exchange(req, res);
    if (req.path === '/computeMetadata/v1/instance/service-accounts/default/token') {
      if (req.headers['metadata-flavor'] !== 'Google')
        return sendJson(res, 403, 'Missing Metadata-Flavor:Google header.');
      return issue(res);
    }
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    const expiresAt = bearer ? tokens.get(bearer) : undefined;
    if (expiresAt === undefined || options.now() >= expiresAt) {
      state.refused.push(req);
      return googleError(
        res,
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      );
    }
    const base = `/v1/projects/${options.project}/locations/${options.location}`;
    if (req.method === 'GET' && req.path === `${base}/endpoints`)
      return sendJson(res, 200, { endpoints: [] });
    if (!req.path.startsWith(`${base}/publishers/`))
      return googleError(res, 404, 'NOT_FOUND', `Project or location not found: ${req.path}`);
    const route = /^\/publishers\/(google|anthropic)\/models\/([^/:]+):(\w+)$/.exec(
      req.path.slice(base.length),
    );
    if (!route) return googleError(res, 404, 'NOT_FOUND', 'Requested entity was not found.');
    const [, publisher, model, method] = route as unknown as [string, string, string, string];
    const fault = state.faults.shift();
    if (fault && fault.kind !== 'truncated') return sendFault(res, fault);
    if (publisher === 'anthropic') return anthropic(req, res, decodeURIComponent(model), method);
    if (method === 'predict') return predict(req, res);
    if (method !== 'generateContent' && method !== 'streamGenerateContent')
      return googleError(res, 400, 'INVALID_ARGUMENT', `Unknown method ${method}`);
    const answer = geminiAnswer(decodeURIComponent(model), req.body, state.signatures);
    if ('error' in answer) return googleError(res, ...answer.error);
    return sendAnswer(res, req, answer.events, method === 'streamGenerateContent');
  };

  async function exchange(req: RecordedRequest, res: http.ServerResponse) {
    const form = new URLSearchParams(req.text);
    const refuse = (why: string) => sendJson(res, 400, { error: 'invalid_grant', error_description: why });
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer')
      return refuse('Invalid grant_type');
    try {
      const { payload, protectedHeader } = await jwtVerify(form.get('assertion') ?? '', options.publicKey, {
        algorithms: ['RS256'],
        issuer: options.clientEmail,
        audience: `${url}/token`,
        currentDate: new Date(options.now()),
      });
      if (protectedHeader.typ !== 'JWT') return refuse('Invalid JWT header');
      if (payload.scope !== 'https://www.googleapis.com/auth/cloud-platform') return refuse('Invalid scope');
      if (
        typeof payload.iat !== 'number' ||
        typeof payload.exp !== 'number' ||
        payload.exp - payload.iat > 3600
      )
        return refuse('Invalid JWT: expiration must be at most an hour after iat');
      state.claims = payload;
    } catch (err) {
      return refuse(`Invalid JWT Signature. (${(err as Error).message})`);
    }
    return issue(res);
  }

  function anthropic(req: RecordedRequest, res: http.ServerResponse, model: string, method: string) {
    const body = req.body;
    if (body.anthropic_version !== 'vertex-2023-10-16')
      return sendJson(res, 400, {
        type: 'error',
        error: { type: 'invalid_request_error', message: 'anthropic_version: Field required' },
      });
    if ('model' in body)
      return sendJson(res, 400, {
        type: 'error',
        error: { type: 'invalid_request_error', message: 'model: Extra inputs are not permitted' },
      });
    if (Array.isArray(body.tools) && body.tools.length > 0) {
      if (method === 'rawPredict')
        return sendJson(res, 200, JSON.parse(anthropicExample('message-tool-use.json')));
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(anthropicExample('stream-tool-use.sse'));
      return;
    }
    const text = `Hello from ${model} on Vertex.`;
    const message = {
      id: 'msg_vrtx_01',
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 9, output_tokens: 6 },
    };
    if (method === 'rawPredict') return sendJson(res, 200, message);
    if (method !== 'streamRawPredict')
      return googleError(res, 400, 'INVALID_ARGUMENT', `Unknown method ${method}`);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (event: string, data: unknown) =>
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    send('message_start', {
      type: 'message_start',
      message: { ...message, content: [], stop_reason: null, usage: { input_tokens: 9, output_tokens: 1 } },
    });
    send('content_block_start', {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    });
    for (const piece of ['Hello from ', `${model} on Vertex.`])
      send('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: piece },
      });
    send('content_block_stop', { type: 'content_block_stop', index: 0 });
    send('message_delta', {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: 6 },
    });
    send('message_stop', { type: 'message_stop' });
    res.end();
  }

  function predict(req: RecordedRequest, res: http.ServerResponse) {
    const instances = (req.body.instances as { content: string }[] | undefined) ?? [];
    const dims =
      (req.body.parameters as { outputDimensionality?: number } | undefined)?.outputDimensionality ?? 8;
    return sendJson(res, 200, {
      predictions: instances.map((i) => ({
        embeddings: {
          values: Array.from({ length: dims }, (_, k) => (i.content.length + k) / 10),
          statistics: { token_count: 2, truncated: false },
        },
      })),
    });
  }

  const server = await startServer(handler);
  url = server.url;
  const fake = Object.assign(server, {
    faults: state.faults,
    signatures: state.signatures,
    refused: state.refused,
  });
  // Counters read live (Object.assign would copy their values once).
  Object.defineProperties(fake, {
    tokensIssued: { get: () => state.tokensIssued },
    claims: { get: () => state.claims },
  });
  return fake as FakeVertex;
}
