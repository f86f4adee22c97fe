import type http from 'node:http';
import {
  completion,
  type FakeServer,
  type RecordedRequest,
  sendJson,
  sendSse,
  startServer,
  streamChunks,
} from './wire.js';

/**
 * A fake Azure OpenAI resource and Microsoft Entra ID token endpoint, written from Microsoft's published
 * references:
 * - Azure OpenAI data-plane inference REST reference (https://learn.microsoft.com/azure/ai-foundry/openai/reference):
 *   `POST /openai/deployments/{deployment-id}/chat/completions?api-version=…` and `…/embeddings`, `api-key`
 *   header or `Authorization: Bearer`; a missing or unknown api-version is 404 "Resource not found".
 * - The v1 API (https://learn.microsoft.com/azure/ai-foundry/openai/api-version-lifecycle):
 *   `POST /openai/v1/chat/completions` with the deployment as `model`, no api-version.
 * - Content filtering (https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter): a filtered
 *   prompt is 400 `code: content_filter` with `innererror: { code: ResponsibleAIPolicyViolation,
 *   content_filter_result }`; a filtered completion is `finish_reason: content_filter`; streams open with a
 *   chunk holding `prompt_filter_results` and no choices, and chunks carry `content_filter_results`.
 * - Quotas (https://learn.microsoft.com/azure/ai-foundry/openai/quotas-limits): 429 with `retry-after` and
 *   `retry-after-ms`.
 * - Entra ID client credentials (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
 *   `POST /{tenant}/oauth2/v2.0/token`, form-encoded `grant_type=client_credentials`, `client_id`,
 *   `client_secret`, `scope`; answer `{ token_type, expires_in, ext_expires_in, access_token }`.
 */
export interface FakeAzureOptions {
  apiKey?: string;
  deployments?: string[];
  apiVersions?: string[];
  entra?: { tenantId: string; clientId: string; clientSecret: string; lifetimeSeconds: number };
  /** The clock tokens expire by (the provider under test reads the same one). */
  now?: () => number;
}

export type AzureFault =
  | { kind: 'throttle'; retryAfterMs: number }
  | { kind: 'prompt_filtered' }
  | { kind: 'server_error' }
  | { kind: 'echo_key' }
  /** A stream that starts, then carries an in-band content-filter error event. */
  | { kind: 'stream_filtered' };

export interface FakeAzure extends FakeServer {
  /** Faults for the next requests, one each, in order. */
  faults: AzureFault[];
  /** Answers 401 to every call it refused (expired or unknown tokens, wrong keys). */
  refused: RecordedRequest[];
  tokensIssued: number;
  /** Makes the token endpoint fail (500) while set. */
  tokenEndpointDown: boolean;
}

const SAFE = {
  hate: { filtered: false, severity: 'safe' },
  self_harm: { filtered: false, severity: 'safe' },
  sexual: { filtered: false, severity: 'safe' },
  violence: { filtered: false, severity: 'safe' },
};

export async function startFakeAzure(options: FakeAzureOptions = {}): Promise<FakeAzure> {
  const now = options.now ?? Date.now;
  const deployments = new Set(options.deployments ?? ['gpt-4o-prod', 'embed-small']);
  const apiVersions = new Set(options.apiVersions ?? ['2024-10-21', '2025-04-01-preview']);
  const tokens = new Map<string, number>();
  const state = {
    faults: [] as AzureFault[],
    refused: [] as RecordedRequest[],
    tokenEndpointDown: false,
    tokensIssued: 0,
  };

  const handler = (req: RecordedRequest, res: http.ServerResponse) => {
    const token = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(req.path);
    if (token) return issueToken(req, res, token[1]!);
    if (!authorized(req)) {
      state.refused.push(req);
      return sendJson(res, 401, {
        error: {
          code: '401',
          message:
            'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.',
        },
      });
    }
    if (req.method === 'GET' && (req.path === '/openai/v1/models' || req.path === '/openai/models')) {
      return sendJson(res, 200, { object: 'list', data: [{ id: 'gpt-4o', object: 'model' }] });
    }
    const route = resolve(req);
    if ('error' in route) return sendJson(res, 404, route.error);
    const fault = state.faults.shift();
    if (fault?.kind === 'stream_filtered')
      return sendSse(res, [
        { choices: [], id: '', model: '', object: '', created: 0, prompt_filter_results: [] },
        {
          error: {
            code: 'content_filter',
            message: 'The response was filtered due to the prompt triggering content management policy.',
            innererror: {
              code: 'ResponsibleAIPolicyViolation',
              content_filter_result: { hate: { filtered: true, severity: 'medium' } },
            },
          },
        },
      ]);
    if (fault) return sendFault(res, fault, req);
    if (route.operation === 'embeddings') return embeddings(req, res, route.deployment);
    return chat(req, res, route.deployment);
  };

  function authorized(req: RecordedRequest): boolean {
    if (options.apiKey && req.headers['api-key'] === options.apiKey) return true;
    const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    const expiresAt = bearer ? tokens.get(bearer) : undefined;
    return expiresAt !== undefined && now() < expiresAt;
  }

  function issueToken(req: RecordedRequest, res: http.ServerResponse, tenant: string) {
    if (state.tokenEndpointDown) return sendJson(res, 500, { error: 'temporarily_unavailable' });
    const form = new URLSearchParams(req.text);
    const entra = options.entra;
    if (
      !entra ||
      tenant !== entra.tenantId ||
      form.get('grant_type') !== 'client_credentials' ||
      form.get('client_id') !== entra.clientId ||
      form.get('client_secret') !== entra.clientSecret ||
      form.get('scope') !== 'https://cognitiveservices.azure.com/.default'
    ) {
      return sendJson(res, 401, {
        error: 'invalid_client',
        error_description: 'AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 0000',
        error_codes: [7000215],
      });
    }
    state.tokensIssued++;
    const value = `eyJ0eXAiOiJKV1QifQ.fake-entra-token-${state.tokensIssued}.sig`;
    tokens.set(value, now() + entra.lifetimeSeconds * 1000);
    return sendJson(res, 200, {
      token_type: 'Bearer',
      expires_in: entra.lifetimeSeconds,
      ext_expires_in: entra.lifetimeSeconds,
      access_token: value,
    });
  }

  function resolve(req: RecordedRequest): { operation: string; deployment: string } | { error: unknown } {
    const v1 = /^\/openai\/v1\/(chat\/completions|embeddings)$/.exec(req.path);
    if (v1) {
      const model = String(req.body.model ?? '');
      if (!deployments.has(model))
        return {
          error: {
            error: {
              code: 'DeploymentNotFound',
              message: `The API deployment for this resource does not exist.`,
            },
          },
        };
      return { operation: v1[1]!, deployment: model };
    }
    const classic = /^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/.exec(req.path);
    const version = req.query.get('api-version');
    if (!classic || !version || !apiVersions.has(version))
      return { error: { error: { code: '404', message: 'Resource not found' } } };
    const deployment = decodeURIComponent(classic[1]!);
    if (!deployments.has(deployment))
      return {
        error: {
          error: {
            code: 'DeploymentNotFound',
            message: 'The API deployment for this resource does not exist.',
          },
        },
      };
    return { operation: classic[2]!, deployment };
  }

  function sendFault(res: http.ServerResponse, fault: AzureFault, req: RecordedRequest) {
    switch (fault.kind) {
      case 'throttle':
        return sendJson(
          res,
          429,
          {
            error: {
              code: '429',
              message: `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ${req.query.get('api-version') ?? 'v1'} have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after ${Math.ceil(fault.retryAfterMs / 1000)} seconds.`,
            },
          },
          {
            'retry-after': String(Math.ceil(fault.retryAfterMs / 1000)),
            'retry-after-ms': String(fault.retryAfterMs),
          },
        );
      case 'prompt_filtered':
        return sendJson(res, 400, {
          error: {
            message:
              "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
            type: null,
            param: 'prompt',
            code: 'content_filter',
            status: 400,
            innererror: {
              code: 'ResponsibleAIPolicyViolation',
              content_filter_result: {
                ...SAFE,
                violence: { filtered: true, severity: 'high' },
                jailbreak: { filtered: false, detected: false },
              },
            },
          },
        });
      case 'server_error':
        return sendJson(res, 500, {
          error: { code: 'InternalServerError', message: 'The server had an error processing your request.' },
        });
      case 'stream_filtered':
        return;
      case 'echo_key':
        return sendJson(res, 400, {
          error: {
            code: 'BadRequest',
            message: `Invalid request sent with api-key ${String(req.headers['api-key'] ?? req.headers.authorization)}`,
          },
        });
    }
  }

  function chat(req: RecordedRequest, res: http.ServerResponse, deployment: string) {
    const messages = (req.body.messages ?? []) as { role: string; content?: unknown }[];
    const last = messages.at(-1);
    const prompt = typeof last?.content === 'string' ? last.content : '';
    const tools = Array.isArray(req.body.tools) && req.body.tools.length > 0 && last?.role === 'user';
    const filteredOutput = prompt.includes('filter my answer');
    const answer = tools
      ? {
          toolCalls: [
            { id: 'call_az1', name: 'get_weather', arguments: '{"location":"Paris","unit":"celsius"}' },
          ],
        }
      : filteredOutput
        ? { text: 'Partial', finish: 'content_filter' }
        : { text: `Hello from Azure deployment ${deployment}.` };
    const model = 'gpt-4o-2024-11-20';
    const choiceFilter = {
      content_filter_results: filteredOutput
        ? { ...SAFE, violence: { filtered: true, severity: 'medium' } }
        : SAFE,
    };
    if (req.body.stream === true) {
      const chunks = streamChunks(model, answer, {
        choice: choiceFilter,
        usage: (req.body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true,
      });
      return sendSse(res, [
        {
          choices: [],
          created: 0,
          id: '',
          model: '',
          object: '',
          prompt_filter_results: [{ prompt_index: 0, content_filter_results: SAFE }],
        },
        ...chunks,
      ]);
    }
    return sendJson(
      res,
      200,
      completion(model, answer, {
        choice: choiceFilter,
        top: { prompt_filter_results: [{ prompt_index: 0, content_filter_results: SAFE }] },
      }),
    );
  }

  function embeddings(req: RecordedRequest, res: http.ServerResponse, deployment: string) {
    const input = req.body.input;
    const texts = Array.isArray(input) ? input : [input];
    const vector = [0.25, -0.5, 0.125];
    return sendJson(res, 200, {
      object: 'list',
      model: deployment === 'embed-small' ? 'text-embedding-3-small' : deployment,
      data: texts.map((_, index) => ({
        object: 'embedding',
        index,
        embedding:
          req.body.encoding_format === 'base64'
            ? Buffer.from(new Float32Array(vector).buffer).toString('base64')
            : vector,
      })),
      usage: { prompt_tokens: 4 * texts.length, total_tokens: 4 * texts.length },
    });
  }

  const server = await startServer(handler);
  // The state object itself is returned, so a test's changes (faults, tokenEndpointDown) reach the handler.
  return Object.assign(state, server);
}
