// OPENAI_ORG_ID and OPENAI_DEFAULT_MODEL (issue 25): what the OpenAI upstream is sent.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';
import {
  type ScriptedUpstream,
  sendJson,
  sendSse,
  startScriptedUpstream,
} from '../fake-upstream/scripted.js';
import { bearer, createUser, startTestApp } from '../helpers/app.js';

/** An OpenAI upstream per https://platform.openai.com/docs/api-reference/chat/create and /models/list. */
function answerLikeOpenAi(upstream: ScriptedUpstream) {
  upstream.handle((req, res) => {
    if (req.path.endsWith('/models'))
      return sendJson(res, 200, {
        object: 'list',
        data: ['listed-first', 'gpt-4o-mini'].map((id) => ({
          id,
          object: 'model',
          created: 0,
          owned_by: 'x',
        })),
      });
    if (req.body.stream) {
      // Streaming chunks: https://platform.openai.com/docs/api-reference/chat-streaming
      const chunk = (delta: object, finish: string | null) =>
        `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 0, model: req.body.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      return sendSse(res, [
        chunk({ role: 'assistant', content: 'hello' }, null),
        chunk({}, 'stop'),
        'data: [DONE]\n\n',
      ]);
    }
    sendJson(res, 200, {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 0,
      model: req.body.model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });
}

async function conversationReply(env: Record<string, string>) {
  const upstream = await startScriptedUpstream();
  answerLikeOpenAi(upstream);
  const t = await startTestApp({
    env: { OPENAI_BASE_URL: `${upstream.url}/v1`, OPENAI_API_KEY: 'sk-upstream-0123456789', ...env },
  });
  try {
    const user = await createUser(t, 'settings@example.com');
    const created = await t.inject({
      method: 'POST',
      url: '/api/conversations',
      headers: bearer(user.accessToken),
      payload: { title: 'no model named' },
    });
    assert.equal(created.statusCode, 201, created.body);
    const sent = await t.inject({
      method: 'POST',
      url: `/api/conversations/${created.json().id}/messages`,
      headers: bearer(user.accessToken),
      payload: { content: 'hi', stream: false },
    });
    assert.ok(sent.statusCode < 300, sent.body);
    const chat = upstream.requests.filter((r) => r.path.endsWith('/chat/completions'));
    assert.equal(chat.length, 1);
    return { chat: chat[0]!, all: upstream.requests };
  } finally {
    await t.close();
    await upstream.close();
  }
}

describe('OPENAI_DEFAULT_MODEL and OPENAI_ORG_ID', () => {
  it('a message whose conversation names no model goes to OPENAI_DEFAULT_MODEL, with the organization header', async () => {
    const { chat, all } = await conversationReply({
      OPENAI_DEFAULT_MODEL: 'gpt-4o-mini',
      OPENAI_ORG_ID: 'org-Test123',
    });
    assert.equal(chat.body.model, 'gpt-4o-mini');
    for (const request of all)
      assert.equal(request.headers['openai-organization'], 'org-Test123', request.path);
  });

  it('unset: the first model the provider lists, and no organization header', async () => {
    const { chat, all } = await conversationReply({});
    assert.equal(chat.body.model, 'listed-first');
    for (const request of all) assert.equal(request.headers['openai-organization'], undefined, request.path);
  });

  it('refuses an organization id that is not one', () => {
    assert.throws(
      () => loadConfig({ OPENAI_API_KEY: 'sk-x', OPENAI_ORG_ID: 'my team' }, { dotenvDir: null }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('OPENAI_ORG_ID')),
    );
  });
});
