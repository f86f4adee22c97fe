import type http from 'node:http';
import { type AwsKey, eventFrame, exceptionFrame, verifySigV4 } from './aws-wire.js';
import { type FakeServer, type RecordedRequest, sendJson, startServer } from './wire.js';

/**
 * A fake Bedrock Runtime, written from AWS's published references:
 * - Converse (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html):
 *   `POST /model/{modelId}/converse`, body `{messages, system, inferenceConfig, toolConfig}`, answer
 *   `{output: {message: {role, content}}, stopReason, usage: {inputTokens, outputTokens, totalTokens}, metrics}`;
 *   errors with `x-amzn-ErrorType` and `{message}` (ThrottlingException 429, ValidationException 400,
 *   AccessDeniedException 403, ServiceUnavailableException 503…).
 * - ConverseStream (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html):
 *   `POST /model/{modelId}/converse-stream`, an `application/vnd.amazon.eventstream` body of messageStart,
 *   contentBlockStart (toolUse start), contentBlockDelta (text or toolUse.input), contentBlockStop,
 *   messageStop (stopReason), metadata (usage); exceptions as `:message-type: exception` frames.
 * - InvokeModel with Titan Text Embeddings V2
 *   (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html):
 *   `{inputText, dimensions, normalize}` → `{embedding, inputTextTokenCount}`.
 * - Model ids (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-use.html): model ids
 *   with `:` and inference-profile ARNs arrive percent-encoded as one path segment.
 * - InvokeModel with Cohere Embed (https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html):
 *   `{texts, input_type}` → `{embeddings, id, response_type: "embeddings_floats", texts}`.
 * Every request is authenticated: SigV4 recomputed from the request (see aws-wire.ts), or a Bedrock API key
 * as `Authorization: Bearer`.
 */
export interface FakeBedrockOptions {
  region: string;
  keys?: AwsKey[];
  apiKey?: string;
  models?: string[];
}

export type BedrockFault =
  | { kind: 'throttle' }
  | { kind: 'validation'; message: string }
  | { kind: 'unavailable' }
  | { kind: 'guardrail' }
  /** A frame whose payload was altered after its CRC was computed. */
  | { kind: 'corrupt' }
  /** Ends the body in the middle of a frame. */
  | { kind: 'truncate' }
  /** Starts streaming, then sends nothing more (until the connection is closed). */
  | { kind: 'stall' }
  /** Starts streaming, then sends an exception frame. */
  | { kind: 'stream_exception'; type: string; message: string };

export interface FakeBedrock extends FakeServer {
  faults: BedrockFault[];
  /** Requests refused for their credentials, with why. */
  refused: { path: string; type: string }[];
  /** The keys accepted now (tests revoke expired ones, in place). */
  keys: AwsKey[];
}

const WORDS = (s: string) => s.split(/(?<= )/).filter(Boolean);

export async function startFakeBedrock(options: FakeBedrockOptions): Promise<FakeBedrock> {
  const models = options.models ?? [
    'amazon.nova-lite-v1:0',
    'anthropic.claude-3-5-sonnet-20240620-v1:0',
    'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0',
    'amazon.titan-embed-text-v2:0',
    'cohere.embed-english-v3',
  ];
  const state = {
    faults: [] as BedrockFault[],
    refused: [] as { path: string; type: string }[],
    keys: [...(options.keys ?? [])],
  };
  const awsError = (res: http.ServerResponse, status: number, type: string, message: string) =>
    sendJson(
      res,
      status,
      { message },
      { 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/` },
    );

  const server = await startServer(async (req, res) => {
    if (!authenticated(req, res)) return;
    const match = /^\/model\/([^/]+)\/(converse|converse-stream|invoke)$/.exec(req.path);
    if (req.method !== 'POST' || !match) return awsError(res, 404, 'UnknownOperationException', 'not found');
    const modelId = decodeURIComponent(match[1]!);
    if (!models.includes(modelId))
      return awsError(res, 400, 'ValidationException', 'The provided model identifier is invalid.');
    const fault = state.faults.shift();
    if (fault?.kind === 'throttle')
      return awsError(res, 429, 'ThrottlingException', 'Too many requests, please wait before trying again.');
    if (fault?.kind === 'validation') return awsError(res, 400, 'ValidationException', fault.message);
    if (fault?.kind === 'unavailable')
      return awsError(res, 503, 'ServiceUnavailableException', 'Service unavailable');
    if (match[2] === 'invoke')
      return modelId.startsWith('cohere.') ? cohereEmbedding(req, res) : titanEmbedding(req, res);
    const answer =
      fault?.kind === 'guardrail'
        ? { text: 'Sorry, the model cannot answer this question.', stopReason: 'guardrail_intervened' }
        : modelAnswer(modelId, req.body);
    if (match[2] === 'converse') {
      const content = answer.toolUse ? [{ toolUse: answer.toolUse }] : [{ text: answer.text }];
      return sendJson(res, 200, {
        output: { message: { role: 'assistant', content } },
        stopReason: answer.stopReason,
        usage: { inputTokens: 21, outputTokens: 9, totalTokens: 30 },
        metrics: { latencyMs: 12 },
      });
    }
    res.writeHead(200, {
      'content-type': 'application/vnd.amazon.eventstream',
      'x-amzn-requestid': 'fake-req',
    });
    const frames: Buffer[] = [eventFrame('messageStart', { role: 'assistant', p: 'abcdefgh' })];
    if (answer.toolUse) {
      const { toolUseId, name, input } = answer.toolUse;
      frames.push(
        eventFrame('contentBlockStart', { contentBlockIndex: 0, start: { toolUse: { toolUseId, name } } }),
      );
      const json = JSON.stringify(input);
      // The input split across deltas at arbitrary points, as Bedrock does.
      for (const piece of [json.slice(0, 5), json.slice(5, 13), json.slice(13)])
        frames.push(
          eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: piece } } }),
        );
    } else {
      for (const word of WORDS(answer.text ?? ''))
        frames.push(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: word } }));
    }
    if (fault?.kind === 'corrupt') {
      const bad = Buffer.concat(frames.slice(0, 2));
      bad.writeUInt8(bad.readUInt8(bad.length - 8) ^ 0xff, bad.length - 8); // in the second frame's payload
      res.end(bad);
      return;
    }
    if (fault?.kind === 'truncate') {
      const two = Buffer.concat(frames.slice(0, 2));
      res.end(two.subarray(0, two.length - 5));
      return;
    }
    if (fault?.kind === 'stall') {
      res.write(Buffer.concat(frames.slice(0, 2)));
      return;
    }
    if (fault?.kind === 'stream_exception') {
      res.write(Buffer.concat(frames));
      res.end(exceptionFrame(fault.type, fault.message));
      return;
    }
    frames.push(eventFrame('contentBlockStop', { contentBlockIndex: 0 }));
    frames.push(eventFrame('messageStop', { stopReason: answer.stopReason }));
    frames.push(
      eventFrame('metadata', {
        usage: { inputTokens: 21, outputTokens: 9, totalTokens: 30 },
        metrics: { latencyMs: 12 },
      }),
    );
    // Frames cut across network writes at odd offsets, as TCP may deliver them.
    const all = Buffer.concat(frames);
    for (let at = 0; at < all.length; at += 37) {
      res.write(all.subarray(at, Math.min(all.length, at + 37)));
      await new Promise((r) => setImmediate(r));
    }
    res.end();
  });

  function authenticated(req: RecordedRequest, res: http.ServerResponse): boolean {
    const auth = String(req.headers.authorization ?? '');
    if (options.apiKey && auth.startsWith('Bearer ')) {
      if (auth === `Bearer ${options.apiKey}`) return true;
      state.refused.push({ path: req.path, type: 'UnrecognizedClientException' });
      awsError(
        res,
        403,
        'UnrecognizedClientException',
        'Invalid API Key format: Must start with pre-defined prefix',
      );
      return false;
    }
    const verdict = verifySigV4(req, state.keys, { region: options.region, service: 'bedrock' });
    if (verdict.ok) return true;
    state.refused.push({ path: req.path, type: verdict.type });
    awsError(res, 403, verdict.type, verdict.message);
    return false;
  }

  return { ...server, ...state };
}

interface Answer {
  text?: string;
  toolUse?: { toolUseId: string; name: string; input: unknown };
  stopReason: string;
}

type Block = { text?: string; toolResult?: { toolUseId: string; content: { text?: string }[] } };

/** A model that calls the first tool it is given, reports tool results, and honours maxTokens and stops. */
function modelAnswer(modelId: string, body: Record<string, unknown>): Answer {
  const messages = (body.messages ?? []) as { role: string; content: Block[] }[];
  const last = messages.at(-1)?.content ?? [];
  const tools = (body.toolConfig as { tools?: { toolSpec: { name: string } }[] } | undefined)?.tools ?? [];
  const result = last.find((b) => b.toolResult)?.toolResult;
  if (result)
    return {
      text: `The tool ${result.toolUseId} said: ${result.content.map((c) => c.text).join('')}`,
      stopReason: 'end_turn',
    };
  if (tools.length)
    return {
      toolUse: {
        toolUseId: 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q',
        name: tools[0]!.toolSpec.name,
        input: { location: 'Paris, France', unit: 'celsius' },
      },
      stopReason: 'tool_use',
    };
  const system = ((body.system ?? []) as { text: string }[]).map((s) => s.text).join(' ');
  let text = `Hello from ${modelId}.${system ? ` System: ${system}` : ''}`;
  const inference = (body.inferenceConfig ?? {}) as { maxTokens?: number; stopSequences?: string[] };
  const stop = inference.stopSequences?.find((s) => text.includes(s));
  if (stop) return { text: text.slice(0, text.indexOf(stop)), stopReason: 'stop_sequence' };
  if (typeof inference.maxTokens === 'number' && inference.maxTokens < WORDS(text).length) {
    text = WORDS(text).slice(0, inference.maxTokens).join('');
    return { text, stopReason: 'max_tokens' };
  }
  return { text, stopReason: 'end_turn' };
}

function titanEmbedding(req: RecordedRequest, res: http.ServerResponse) {
  const {
    inputText,
    dimensions = 1024,
    normalize,
  } = req.body as { inputText?: string; dimensions?: number; normalize?: boolean };
  if (typeof inputText !== 'string')
    return sendJson(
      res,
      400,
      { message: 'Malformed input request: required key [inputText] not found' },
      { 'x-amzn-errortype': 'ValidationException' },
    );
  if (![256, 512, 1024].includes(dimensions))
    return sendJson(
      res,
      400,
      { message: 'Malformed input request: dimensions must be 256, 512 or 1024' },
      { 'x-amzn-errortype': 'ValidationException' },
    );
  // A deterministic vector from the text: its length in the first slot, normalized when asked.
  const raw = Array.from({ length: dimensions }, (_, i) => (i === 0 ? inputText.length : 1));
  const norm = normalize ? Math.hypot(...raw) : 1;
  return sendJson(res, 200, {
    embedding: raw.map((v) => v / norm),
    inputTextTokenCount: inputText.split(/\s+/).length,
  });
}

function cohereEmbedding(req: RecordedRequest, res: http.ServerResponse) {
  const { texts, input_type } = req.body as { texts?: string[]; input_type?: string };
  if (!Array.isArray(texts) || !input_type)
    return sendJson(
      res,
      400,
      { message: 'Malformed input request: texts and input_type are required' },
      { 'x-amzn-errortype': 'ValidationException' },
    );
  return sendJson(res, 200, {
    id: 'emb-1',
    response_type: 'embeddings_floats',
    texts,
    embeddings: texts.map((t) => Array.from({ length: 1024 }, (_, i) => (i === 0 ? t.length : 0))),
  });
}
