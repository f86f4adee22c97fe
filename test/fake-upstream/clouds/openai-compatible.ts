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

type Message = {
  role: string;
  content?: unknown;
  tool_calls?: { id: string }[];
  tool_call_id?: string;
  reasoning_content?: unknown;
};

function authorized(req: RecordedRequest, res: http.ServerResponse, key: string) {
  if (req.headers.authorization === `Bearer ${key}`) return true;
  sendJson(res, 401, { message: 'Unauthorized', request_id: 'fake' });
  return false;
}

/**
 * A fake Mistral API, from https://docs.mistral.ai/api/ (POST /v1/chat/completions; fields outside the schema
 * refused with 422 "Extra inputs are not permitted"; the last stream chunk carries usage) and its function-
 * calling guide (tool-call ids are 9 characters, a-z A-Z 0-9; the 400 text is the one users report, e.g.
 * langchain-ai/langchain#24668). A tool message must answer a tool call made earlier in the conversation.
 */
const MISTRAL_FIELDS = new Set([
  'model',
  'messages',
  'temperature',
  'top_p',
  'max_tokens',
  'stream',
  'stop',
  'random_seed',
  'response_format',
  'tools',
  'tool_choice',
  'presence_penalty',
  'frequency_penalty',
  'n',
  'prediction',
  'parallel_tool_calls',
  'safe_prompt',
]);

export async function startFakeMistral(key: string): Promise<FakeServer> {
  return startServer((req, res) => {
    if (!authorized(req, res, key)) return;
    if (req.path !== '/v1/chat/completions') return sendJson(res, 404, { detail: 'Not Found' });
    const extra = Object.keys(req.body).filter((k) => !MISTRAL_FIELDS.has(k));
    if (extra.length)
      return sendJson(res, 422, {
        object: 'error',
        message: {
          detail: extra.map((k) => ({
            type: 'extra_forbidden',
            loc: ['body', k],
            msg: 'Extra inputs are not permitted',
          })),
        },
        type: 'invalid_request_error',
        param: null,
        code: null,
      });
    const messages = req.body.messages as Message[];
    const seen = new Set<string>();
    for (const m of messages) {
      for (const id of [
        ...(m.tool_calls ?? []).map((c) => c.id),
        ...(m.tool_call_id ? [m.tool_call_id] : []),
      ]) {
        if (!/^[a-zA-Z0-9]{9}$/.test(id))
          return sendJson(res, 400, {
            object: 'error',
            message: `Tool call id was ${id} but must be a-z, A-Z, 0-9, with a length of 9.`,
            type: 'invalid_request_error',
            param: null,
            code: null,
          });
      }
      for (const c of m.tool_calls ?? []) seen.add(c.id);
      if (m.tool_call_id && !seen.has(m.tool_call_id))
        return sendJson(res, 400, {
          object: 'error',
          message: `Unexpected tool call id ${m.tool_call_id} in tool results`,
          type: 'invalid_request_error',
          param: null,
          code: null,
        });
    }
    const last = messages.at(-1)!;
    const answer =
      last.role === 'user' && Array.isArray(req.body.tools)
        ? { toolCalls: [{ id: 'D681PevKs', name: 'get_weather', arguments: '{"location":"Paris"}' }] }
        : { text: `Mistral saw ${messages.length} messages.` };
    const model = String(req.body.model);
    if (req.body.stream) {
      // Mistral puts usage on the chunk with the finish reason, not on a chunk of its own.
      const chunks = streamChunks(model, answer, { usage: false }) as { usage?: unknown }[];
      chunks.at(-1)!.usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 };
      return sendSse(res, chunks);
    }
    return sendJson(res, 200, completion(model, answer));
  });
}

/**
 * A fake DeepSeek API, from https://api-docs.deepseek.com/ (POST /chat/completions at https://api.deepseek.com)
 * and its thinking-mode guide (https://api-docs.deepseek.com/guides/thinking_mode): answers carry
 * `reasoning_content` beside `content` (and in stream deltas); an assistant turn that made tool calls must be
 * sent back with its reasoning_content or the API answers 400; deepseek-reasoner refuses logprobs
 * (https://api-docs.deepseek.com/guides/reasoning_model) and, as documented for it, reasoning_content on
 * other assistant turns.
 */
export async function startFakeDeepSeek(key: string): Promise<FakeServer> {
  return startServer((req, res) => {
    if (!authorized(req, res, key)) return;
    if (req.path !== '/chat/completions') return sendJson(res, 404, { error: { message: 'not found' } });
    const invalid = (message: string) =>
      sendJson(res, 400, {
        error: { message, type: 'invalid_request_error', param: null, code: 'invalid_request_error' },
      });
    if (req.body.logprobs !== undefined) return invalid('logprobs is not supported by deepseek-reasoner');
    const messages = req.body.messages as Message[];
    for (const m of messages) {
      if (m.role !== 'assistant') continue;
      const calls = (m.tool_calls ?? []).length > 0;
      if (calls && typeof m.reasoning_content !== 'string')
        return invalid('Missing `reasoning_content` field in the assistant message at tool call turns.');
      if (!calls && m.reasoning_content !== undefined)
        return invalid('The reasoning_content of a previous turn must not be sent back.');
    }
    const last = messages.at(-1)!;
    const answer =
      last.role === 'user' && Array.isArray(req.body.tools)
        ? { toolCalls: [{ id: 'call_00_ds1', name: 'get_weather', arguments: '{"location":"Hangzhou"}' }] }
        : { text: 'The answer is 9.8.' };
    const reasoning = 'Compare 9.11 and 9.8: 9.8 is larger.';
    const model = String(req.body.model);
    if (req.body.stream) {
      const chunks = streamChunks(model, answer) as { choices?: { delta: Record<string, unknown> }[] }[];
      // Reasoning deltas come first, each with content null.
      const thinking = reasoning.split(/(?<= )/).map((piece) => ({
        id: 'chatcmpl-fake1',
        object: 'chat.completion.chunk',
        created: 1_700_000_000,
        model,
        choices: [{ index: 0, delta: { content: null, reasoning_content: piece }, finish_reason: null }],
      }));
      return sendSse(res, [chunks[0], ...thinking, ...chunks.slice(1)]);
    }
    return sendJson(res, 200, completion(model, answer, { message: { reasoning_content: reasoning } }));
  });
}
