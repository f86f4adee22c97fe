import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { exportPKCS8, generateKeyPair } from 'jose';
import OpenAI from 'openai';
import { type FakeAzure, startFakeAzure } from '../fake-upstream/clouds/azure.js';
import { type FakeBedrock, startFakeBedrock } from '../fake-upstream/clouds/bedrock.js';
import { type FakeCohere, startFakeCohere } from '../fake-upstream/clouds/cohere.js';
import { type FakeGemini, startFakeGemini } from '../fake-upstream/clouds/gemini.js';
import { startFakeHuggingFace } from '../fake-upstream/clouds/huggingface.js';
import { type FakeVertex, startFakeVertex } from '../fake-upstream/clouds/vertex.js';
import type { FakeServer } from '../fake-upstream/clouds/wire.js';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { type ChatStack, startChatStack, UPSTREAM_KEY } from '../helpers/chat-stack.js';

/**
 * Issue 20's translation matrix: each client protocol (chat completions, Messages, Responses, with the
 * official SDKs) × each provider family (OpenAI, Anthropic, Bedrock Converse, Gemini, Azure OpenAI, Cohere v2,
 * Vertex AI's Gemini models and Anthropic's models on Vertex (rawPredict), Hugging Face's router), streaming and not, text and tools — each checking the text, the tool calls, the stop reason and the usage.
 * The upstreams are the wire-format fakes of test/fake-upstream (each cites the vendor page it follows);
 * the Anthropic one replays Anthropic's published examples (src/providers/anthropic/fixtures, written from
 * https://docs.anthropic.com/en/api/messages and https://docs.anthropic.com/en/api/messages-streaming).
 */
const fixture = (name: string) =>
  readFileSync(new URL(`../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');

/** The text of an Anthropic example stream: its text_delta events joined. */
const streamedText = (name: string) =>
  fixture(name)
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => JSON.parse(line.slice(6)) as { delta?: { type?: string; text?: string } })
    .flatMap((e) => (e.delta?.type === 'text_delta' ? [e.delta.text!] : []))
    .join('');

type Family =
  | 'openai'
  | 'anthropic'
  | 'bedrock'
  | 'gemini'
  | 'azure'
  | 'cohere'
  | 'vertex-gemini'
  | 'vertex-claude'
  | 'huggingface';

const VERTEX = {
  project: 'colloquy-matrix',
  location: 'us-east5',
  clientEmail: 'matrix@colloquy-matrix.iam.gserviceaccount.com',
};
const VERTEX_CLAUDE = 'claude-sonnet-4-5@20250929';
const HF_MODEL = 'meta-llama/Llama-3.3-70B-Instruct:together';
type Protocol = 'chat' | 'messages' | 'responses';

/** What each protocol's answer says, in one shape. */
interface Outcome {
  text: string;
  calls: { id: string; name: string; args: Record<string, unknown> }[];
  /** The protocol's own stop reason (Responses: the status). */
  stop: string;
  input: number;
  output: number;
}

/** Each family's text answer, per its fake (Anthropic's examples differ between the stream and the message). */
function expectedText(family: Family, stream: boolean): string {
  switch (family) {
    case 'openai':
      return 'Hello from the fake upstream, streaming word by word.';
    case 'anthropic':
      return stream ? streamedText('stream-text.sse') : 'Paris is the capital of France.';
    case 'bedrock':
      return 'Hello from anthropic.claude-3-5-sonnet-20240620-v1:0.';
    case 'gemini':
      return 'Hello from Gemini gemini-2.5-flash.';
    case 'azure':
      return 'Hello from Azure deployment gpt-4o-prod.';
    case 'cohere':
      return 'Hello from Cohere.';
    case 'vertex-gemini':
      return 'Hello from Gemini gemini-2.5-flash.';
    case 'vertex-claude':
      return `Hello from ${VERTEX_CLAUDE} on Vertex.`;
    case 'huggingface':
      return `Served ${HF_MODEL}.`;
  }
}

const STOP: Record<Protocol, { text: string; tools: string }> = {
  chat: { text: 'stop', tools: 'tool_calls' },
  messages: { text: 'end_turn', tools: 'tool_use' },
  responses: { text: 'completed', tools: 'completed' },
};

const PROMPT = { text: 'Say hello', tools: 'What is the weather in Paris?' };
const schema = { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] };

describe('translation matrix: client protocols × provider families', () => {
  let s: ChatStack;
  let claude: ScriptedUpstream;
  let azure: FakeAzure;
  let bedrock: FakeBedrock;
  let gemini: FakeGemini;
  let cohere: FakeCohere;
  let vertex: FakeVertex;
  let huggingface: FakeServer;
  let keyDir: string;
  let openai: OpenAI;
  let anthropic: Anthropic;

  before(async () => {
    claude = await startScriptedUpstream();
    // Anthropic's examples, chosen by what the request asks (a tool offered, a stream).
    claude.handle((req, res) => {
      const tools = Array.isArray(req.body.tools) && req.body.tools.length > 0;
      if (req.body.stream) sendSse(res, [fixture(tools ? 'stream-tool-use.sse' : 'stream-text.sse')]);
      else sendJson(res, 200, JSON.parse(fixture(tools ? 'message-tool-use.json' : 'message-text.json')));
    });
    azure = await startFakeAzure({ apiKey: UPSTREAM_KEY });
    bedrock = await startFakeBedrock({ region: 'us-east-1', apiKey: UPSTREAM_KEY });
    gemini = await startFakeGemini({ apiKey: UPSTREAM_KEY });
    cohere = await startFakeCohere(UPSTREAM_KEY);
    huggingface = await startFakeHuggingFace(UPSTREAM_KEY);
    // Vertex AI takes a service account's key: the fake checks the signed assertion, then the token it issued.
    const pair = await generateKeyPair('RS256', { extractable: true });
    vertex = await startFakeVertex({
      ...VERTEX,
      publicKey: pair.publicKey,
      lifetimeSeconds: 3600,
      now: Date.now,
    });
    keyDir = await mkdtemp(join(tmpdir(), 'colloquy-matrix-'));
    const keyFile = join(keyDir, 'sa.json');
    await writeFile(
      keyFile,
      JSON.stringify({
        type: 'service_account',
        project_id: VERTEX.project,
        private_key_id: 'matrix-1',
        private_key: await exportPKCS8(pair.privateKey),
        client_email: VERTEX.clientEmail,
        token_uri: `${vertex.url}/token`,
      }),
    );
    s = await startChatStack({
      env: { UPSTREAM_RETRIES: '0' },
      routing: () => ({
        providers: [
          { name: 'claude', type: 'anthropic', base_url: claude.url },
          { name: 'az', type: 'azure', base_url: azure.url },
          { name: 'aws', type: 'bedrock', region: 'us-east-1', base_url: bedrock.url },
          { name: 'gem', type: 'gemini', base_url: gemini.url },
          { name: 'co', type: 'cohere', base_url: cohere.url },
          {
            name: 'vx',
            type: 'vertex',
            project: VERTEX.project,
            location: VERTEX.location,
            base_url: vertex.url,
            credentials_file: keyFile,
          },
          { name: 'hf', type: 'huggingface', base_url: `${huggingface.url}/v1` },
        ],
        models: [
          { name: 'm-openai', deployments: [{ provider: 'openai', model: 'gpt-4o-mini' }] },
          { name: 'm-anthropic', deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5-20250929' }] },
          { name: 'm-azure', deployments: [{ provider: 'az', model: 'gpt-4o-prod' }] },
          {
            name: 'm-bedrock',
            deployments: [{ provider: 'aws', model: 'anthropic.claude-3-5-sonnet-20240620-v1:0' }],
          },
          { name: 'm-gemini', deployments: [{ provider: 'gem', model: 'gemini-2.5-flash' }] },
          { name: 'm-cohere', deployments: [{ provider: 'co', model: 'command-a-03-2025' }] },
          { name: 'm-vertex-gemini', deployments: [{ provider: 'vx', model: 'gemini-2.5-flash' }] },
          { name: 'm-vertex-claude', deployments: [{ provider: 'vx', model: VERTEX_CLAUDE }] },
          { name: 'm-huggingface', deployments: [{ provider: 'hf', model: HF_MODEL }] },
        ],
      }),
    });
    openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: s.url, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
    for (const fake of [claude, azure, bedrock, gemini, cohere, vertex, huggingface]) await fake?.close();
    if (keyDir) await rm(keyDir, { recursive: true, force: true });
  });

  async function viaChat(model: string, tools: boolean, stream: boolean): Promise<Outcome> {
    const params = {
      model,
      messages: [{ role: 'user' as const, content: tools ? PROMPT.tools : PROMPT.text }],
      ...(tools && {
        tools: [{ type: 'function' as const, function: { name: 'get_weather', parameters: schema } }],
      }),
    };
    if (!stream) {
      const c = await openai.chat.completions.create(params);
      const m = c.choices[0]!;
      return {
        text: m.message.content ?? '',
        calls: (m.message.tool_calls ?? []).map((t) => {
          assert.ok(t.type === 'function');
          return { id: t.id, name: t.function.name, args: JSON.parse(t.function.arguments) };
        }),
        stop: m.finish_reason,
        input: c.usage!.prompt_tokens,
        output: c.usage!.completion_tokens,
      };
    }
    const chunks = await openai.chat.completions.create({
      ...params,
      stream: true,
      stream_options: { include_usage: true },
    });
    const calls: { id: string; name: string; args: string }[] = [];
    const out = { text: '', stop: '', input: 0, output: 0 };
    for await (const chunk of chunks) {
      if (chunk.usage) [out.input, out.output] = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens];
      const choice = chunk.choices[0];
      if (!choice) continue;
      out.text += choice.delta.content ?? '';
      if (choice.finish_reason) out.stop = choice.finish_reason;
      for (const d of choice.delta.tool_calls ?? []) {
        calls[d.index] ??= { id: '', name: '', args: '' };
        const call = calls[d.index]!;
        call.id ||= d.id ?? '';
        call.name ||= d.function?.name ?? '';
        call.args += d.function?.arguments ?? '';
      }
    }
    return { ...out, calls: calls.map((c) => ({ ...c, args: JSON.parse(c.args) })) };
  }

  async function viaMessages(model: string, tools: boolean, stream: boolean): Promise<Outcome> {
    const params = {
      model,
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: tools ? PROMPT.tools : PROMPT.text }],
      ...(tools && { tools: [{ name: 'get_weather', input_schema: schema as Anthropic.Tool.InputSchema }] }),
    };
    const m = stream
      ? await anthropic.messages.stream(params).finalMessage()
      : await anthropic.messages.create(params);
    return {
      text: m.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join(''),
      calls: m.content.flatMap((b) =>
        b.type === 'tool_use' ? [{ id: b.id, name: b.name, args: b.input as Record<string, unknown> }] : [],
      ),
      stop: m.stop_reason ?? '',
      input: m.usage.input_tokens,
      output: m.usage.output_tokens,
    };
  }

  async function viaResponses(model: string, tools: boolean, stream: boolean): Promise<Outcome> {
    const params = {
      model,
      input: tools ? PROMPT.tools : PROMPT.text,
      ...(tools && {
        tools: [{ type: 'function' as const, name: 'get_weather', parameters: schema, strict: false }],
      }),
    };
    let r: OpenAI.Responses.Response | undefined;
    if (stream) {
      for await (const event of await openai.responses.create({ ...params, stream: true }))
        if (event.type === 'response.completed') r = event.response;
    } else r = await openai.responses.create(params);
    assert.ok(r, 'a completed response');
    return {
      text: r.output_text,
      calls: r.output.flatMap((o) =>
        o.type === 'function_call' ? [{ id: o.call_id, name: o.name, args: JSON.parse(o.arguments) }] : [],
      ),
      stop: r.status ?? '',
      input: r.usage!.input_tokens,
      output: r.usage!.output_tokens,
    };
  }

  const run = { chat: viaChat, messages: viaMessages, responses: viaResponses };
  const families: Family[] = [
    'openai',
    'anthropic',
    'bedrock',
    'gemini',
    'azure',
    'cohere',
    'vertex-gemini',
    'vertex-claude',
    'huggingface',
  ];

  for (const protocol of ['chat', 'messages', 'responses'] as const)
    for (const family of families)
      for (const stream of [false, true])
        it(`${protocol} × ${family}, ${stream ? 'streaming' : 'not streaming'}: text, then tools`, async () => {
          const text = await run[protocol](`m-${family}`, false, stream);
          assert.equal(text.text, expectedText(family, stream));
          assert.deepEqual(text.calls, []);
          assert.equal(text.stop, STOP[protocol].text);
          assert.ok(text.input > 0 && text.output > 0, `usage: ${text.input} in, ${text.output} out`);

          const tools = await run[protocol](`m-${family}`, true, stream);
          assert.ok(tools.calls.length >= 1, 'a tool call');
          for (const call of tools.calls) {
            assert.equal(call.name, 'get_weather');
            assert.equal(typeof call.args.location, 'string', 'arguments whole and parsed');
            assert.ok(call.id.length > 0, 'an id the client can answer');
          }
          assert.equal(new Set(tools.calls.map((c) => c.id)).size, tools.calls.length, 'ids distinct');
          assert.equal(tools.stop, STOP[protocol].tools);
          assert.ok(tools.output > 0);
        });
});

/**
 * Issue 20's faults across the matrix: an upstream's HTTP error before the first byte becomes each client
 * protocol's own documented error (the official SDKs' error classes, which key on the status), and a stream
 * broken mid-way (a malformed chunk, no terminator) ends with that protocol's in-band error, never hangs.
 * The upstream is the OpenAI-format fake (test/fake-upstream/server.ts) with its queued faults.
 */
describe('translation matrix: upstream errors and mid-stream faults per client protocol', () => {
  let s: ChatStack;
  let openai: OpenAI;
  let anthropic: Anthropic;
  before(async () => {
    s = await startChatStack({ env: { UPSTREAM_RETRIES: '0', UPSTREAM_IDLE_TIMEOUT_MS: '2000' } });
    openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: s.apiKey, maxRetries: 0 });
    anthropic = new Anthropic({ baseURL: s.url, apiKey: s.apiKey, maxRetries: 0 });
  });
  after(async () => {
    await s?.close();
  });

  const model = 'gpt-4o-mini';
  /** Each call names its request (X-Request-Id, which Colloquy keeps), to find its ledger row. */
  const named = (requestId?: string) => (requestId ? { headers: { 'x-request-id': requestId } } : undefined);
  const call = {
    chat: (stream: boolean, requestId?: string) =>
      stream
        ? openai.chat.completions
            .create({ model, messages: [{ role: 'user', content: 'hi' }], stream: true }, named(requestId))
            .then(async (chunks) => {
              let text = '';
              for await (const c of chunks) text += c.choices[0]?.delta.content ?? '';
              return text;
            })
        : openai.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }),
    messages: (stream: boolean, requestId?: string) => {
      const params = { model, max_tokens: 64, messages: [{ role: 'user' as const, content: 'hi' }] };
      return stream
        ? anthropic.messages.stream(params, named(requestId)).finalMessage()
        : anthropic.messages.create(params);
    },
    responses: (stream: boolean, requestId?: string) =>
      stream
        ? openai.responses
            .create({ model, input: 'hi', stream: true }, named(requestId))
            .then(async (events) => {
              for await (const e of events) {
                if (e.type === 'response.failed')
                  throw new Error(`response.failed: ${JSON.stringify(e.response.error)}`);
                if (e.type === 'error') throw new Error(`error event: ${e.message}`);
              }
            })
        : openai.responses.create({ model, input: 'hi' }),
  };
  const ledgerProtocol = { chat: 'chat_completions', messages: 'messages', responses: 'responses' };

  // What each protocol's SDK raises for an upstream status (Colloquy's mapping, documented in the README).
  const expected: Record<'chat' | 'messages' | 'responses', Record<number, (err: unknown) => boolean>> = {
    chat: {
      429: (e) => e instanceof OpenAI.RateLimitError,
      400: (e) => e instanceof OpenAI.BadRequestError,
      500: (e) => e instanceof OpenAI.InternalServerError,
    },
    responses: {
      429: (e) => e instanceof OpenAI.RateLimitError,
      400: (e) => e instanceof OpenAI.BadRequestError,
      500: (e) => e instanceof OpenAI.InternalServerError,
    },
    messages: {
      429: (e) => e instanceof Anthropic.RateLimitError && (e.error as { type?: string })?.type === 'error',
      400: (e) => e instanceof Anthropic.BadRequestError,
      500: (e) => e instanceof Anthropic.InternalServerError,
    },
  };

  for (const protocol of ['chat', 'messages', 'responses'] as const) {
    for (const status of [429, 400, 500])
      for (const stream of [false, true])
        it(`${protocol}: an upstream ${status} is the protocol's own error (${stream ? 'streaming' : 'not streaming'})`, async () => {
          s.fake.queue({
            kind: 'status',
            status,
            body: {
              error: { message: `upstream says ${status}`, type: 'invalid_request_error', code: null },
            },
          });
          await assert.rejects(call[protocol](stream), (err) => {
            assert.ok(expected[protocol][status]!(err), `${protocol} ${status}: got ${String(err)}`);
            return true;
          });
        });

    const faults = [
      { name: 'connection reset', fault: { kind: 'reset-after', chunks: 2 } },
      { name: 'malformed chunk', fault: { kind: 'malformed-chunk' } },
      { name: 'missing terminator', fault: { kind: 'no-done-unfinished' } },
    ] as const;
    for (const { name, fault } of faults)
      it(`${protocol}: a stream with a ${name} ends with an error, not a hang or a clean finish; the partial output is recorded`, async () => {
        s.fake.queue(fault);
        const requestId = `req_matrix_${protocol}_${fault.kind}`;
        // The protocol's in-band error: the SDK's APIError (chat, Messages), an error / response.failed event.
        const inBand = {
          chat: (e: unknown) => e instanceof OpenAI.APIError,
          messages: (e: unknown) => e instanceof Anthropic.APIError,
          responses: (e: unknown) => /response\.failed|error event/.test(String(e)),
        }[protocol];
        await assert.rejects(call[protocol](true, requestId), (err) => {
          assert.ok(inBand(err), `${protocol} ${name}: got ${String(err)}`);
          return true;
        });
        // The ledger row of that request: under its protocol, marked partial, with the output that was
        // streamed before the fault (the upstream had sent words, so some output tokens).
        const row = await s.usageRow(requestId);
        assert.equal(row.protocol, ledgerProtocol[protocol]);
        assert.equal(row.status, 'partial');
        assert.equal(row.model, model);
        assert.ok(row.completion_tokens > 0, `partial output recorded: ${row.completion_tokens} tokens`);
        assert.ok(row.prompt_tokens > 0);
      });
  }
});
