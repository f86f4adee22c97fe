import type http from 'node:http';
import { type FakeServer, type RecordedRequest, sendJson, startServer } from './wire.js';

/**
 * A fake Cohere API, written from Cohere's references:
 * - Chat v2 (https://docs.cohere.com/reference/chat): `POST /v2/chat`, `Authorization: Bearer`; the answer
 *   `{id, finish_reason: COMPLETE|MAX_TOKENS|TOOL_CALL…, message:{role, content:[{type:text,text}], tool_plan,
 *   tool_calls:[{id,type:function,function:{name,arguments}}], citations}, usage:{billed_units, tokens}}`.
 * - Streaming (https://docs.cohere.com/reference/chat-stream, https://docs.cohere.com/docs/streaming): SSE events
 *   `message-start`, `content-start`, `content-delta`, `content-end`, `tool-plan-delta`, `tool-call-start`,
 *   `tool-call-delta`, `tool-call-end`, `citation-start`, `citation-end`, `message-end` (finish_reason, usage).
 * - Embed v2 (https://docs.cohere.com/reference/embed): `POST /v2/embed` `{model, texts, input_type,
 *   embedding_types, output_dimension}` → `{embeddings:{float:[…]}, meta:{billed_units:{input_tokens}}}`.
 * - Errors (https://docs.cohere.com/reference/errors): `{"message": "…"}`; 401 invalid api token, 429 too many
 *   requests.
 *
 * Scripted by the last user text: "weather" with tools → a tool plan and a call whose arguments stream in
 * three pieces; a tool result → an answer with a citation of it.
 */
export interface FakeCohere extends FakeServer {
  faults: ('throttle' | 'server_error')[];
}

export async function startFakeCohere(apiKey: string): Promise<FakeCohere> {
  const faults: FakeCohere['faults'] = [];
  const handler = (req: RecordedRequest, res: http.ServerResponse) => {
    if (req.headers.authorization !== `Bearer ${apiKey}`)
      return sendJson(res, 401, { message: 'invalid api token' });
    if (req.method === 'GET' && req.path === '/v1/models')
      return sendJson(res, 200, { models: [{ name: 'command-a-03-2025' }] });
    const fault = faults.shift();
    if (fault === 'throttle')
      return sendJson(
        res,
        429,
        { message: 'You are using a Trial key, which is limited to 20 API calls / minute.' },
        { 'retry-after': '1' },
      );
    if (fault === 'server_error') return sendJson(res, 500, { message: 'internal server error' });
    if (req.method === 'POST' && req.path === '/v2/embed') return embed(req, res);
    if (req.method !== 'POST' || req.path !== '/v2/chat') return sendJson(res, 404, { message: 'Not Found' });
    const messages = req.body.messages as { role: string; content?: unknown }[];
    if (!Array.isArray(messages) || !req.body.model)
      return sendJson(res, 400, { message: 'invalid request: model and messages are required' });
    const last = messages.at(-1)!;
    const usage = {
      billed_units: { input_tokens: 8, output_tokens: 5 },
      tokens: { input_tokens: 70, output_tokens: 12 },
    };
    const events: [string, Record<string, unknown>][] = [
      ['message-start', { id: 'c0h3r3-1', delta: { message: { role: 'assistant' } } }],
    ];
    let finish = 'COMPLETE';
    if (last.role === 'tool') {
      const text = `It is ${String(last.content)} in Paris.`;
      events.push([
        'content-start',
        { index: 0, delta: { message: { content: { type: 'text', text: '' } } } },
      ]);
      events.push(['content-delta', { index: 0, delta: { message: { content: { text } } } }]);
      events.push(['content-end', { index: 0 }]);
      events.push([
        'citation-start',
        {
          index: 0,
          delta: {
            message: {
              citations: {
                start: 6,
                end: 6 + String(last.content).length,
                text: String(last.content),
                sources: [{ type: 'tool', id: 'get_weather_0:0' }],
              },
            },
          },
        },
      ]);
      events.push(['citation-end', { index: 0 }]);
    } else if (/weather/i.test(String(last.content)) && req.body.tools) {
      finish = 'TOOL_CALL';
      events.push(['tool-plan-delta', { delta: { message: { tool_plan: 'I will look up the weather.' } } }]);
      const args = '{"location":"Paris"}';
      events.push([
        'tool-call-start',
        {
          index: 0,
          delta: {
            message: {
              tool_calls: {
                id: 'get_weather_x7k2',
                type: 'function',
                function: { name: 'get_weather', arguments: '' },
              },
            },
          },
        },
      ]);
      for (const piece of [args.slice(0, 5), args.slice(5, 12), args.slice(12)])
        events.push([
          'tool-call-delta',
          { index: 0, delta: { message: { tool_calls: { function: { arguments: piece } } } } },
        ]);
      events.push(['tool-call-end', { index: 0 }]);
    } else {
      events.push([
        'content-start',
        { index: 0, delta: { message: { content: { type: 'text', text: '' } } } },
      ]);
      for (const piece of ['Hello ', 'from ', 'Cohere.'])
        events.push(['content-delta', { index: 0, delta: { message: { content: { text: piece } } } }]);
      events.push(['content-end', { index: 0 }]);
    }
    events.push(['message-end', { delta: { finish_reason: finish, usage } }]);
    if (req.body.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const [type, data] of events)
        res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      return res.end();
    }
    return sendJson(res, 200, merge(events, finish, usage));
  };
  const server = await startServer((req, res) => {
    handler(req, res);
  });
  return Object.assign(server, { faults });
}

/** The non-streaming answer the same events make. */
function merge(events: [string, Record<string, unknown>][], finish: string, usage: unknown) {
  type D = {
    message?: {
      content?: { text?: string };
      tool_plan?: string;
      tool_calls?: { id?: string; function?: { name?: string; arguments?: string } };
      citations?: unknown;
    };
  };
  let text = '';
  let plan = '';
  const calls: { id: string; type: string; function: { name: string; arguments: string } }[] = [];
  const citations: unknown[] = [];
  for (const [type, data] of events) {
    const m = (data.delta as D | undefined)?.message;
    if (type === 'content-delta') text += m?.content?.text ?? '';
    if (type === 'tool-plan-delta') plan += m?.tool_plan ?? '';
    if (type === 'tool-call-start')
      calls.push({
        id: m!.tool_calls!.id!,
        type: 'function',
        function: { name: m!.tool_calls!.function!.name!, arguments: '' },
      });
    if (type === 'tool-call-delta')
      calls.at(-1)!.function.arguments += m?.tool_calls?.function?.arguments ?? '';
    if (type === 'citation-start') citations.push(m?.citations);
  }
  return {
    id: 'c0h3r3-1',
    finish_reason: finish,
    message: {
      role: 'assistant',
      ...(text ? { content: [{ type: 'text', text }] } : {}),
      ...(plan ? { tool_plan: plan } : {}),
      ...(calls.length ? { tool_calls: calls } : {}),
      ...(citations.length ? { citations } : {}),
    },
    usage,
  };
}

function embed(req: RecordedRequest, res: http.ServerResponse) {
  const texts = req.body.texts as string[] | undefined;
  if (!Array.isArray(texts) || !req.body.input_type)
    return sendJson(res, 400, { message: 'invalid request: input_type is required for embed-v4.0' });
  const dims = (req.body.output_dimension as number | undefined) ?? 8;
  return sendJson(res, 200, {
    id: 'emb-1',
    embeddings: { float: texts.map((t) => Array.from({ length: dims }, (_, i) => (t.length + i) / 10)) },
    texts,
    meta: { api_version: { version: '2' }, billed_units: { input_tokens: texts.length * 2 } },
    response_type: 'embeddings_by_type',
  });
}
