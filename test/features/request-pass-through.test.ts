import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';

/**
 * Issue 26's request pass-through: a non-streaming /v1/chat/completions request to an OpenAI-format upstream
 * that nothing changes but the model is forwarded as the client's bytes, the model rewritten in place. The
 * upstream must receive exactly the client's text but for the model's value; anything Colloquy changes
 * (a guardrail, stream_options) or cannot rewrite exactly (a repeated key) is serialized as before.
 * Request format: https://platform.openai.com/docs/api-reference/chat/create (`stream` defaults to false).
 */
describe('request pass-through: the upstream receives the client bytes but for the model', () => {
  let fast: ChatStack;
  let guarded: ChatStack;
  before(async () => {
    fast = await startChatStack();
    guarded = await startChatStack({
      routing: (backup) => ({
        ...defaultRouting(backup),
        guardrails: [
          { name: 'never', check: 'regex', deny: ['zzz-never-said-zzz'], stage: 'input', action: 'block' },
        ],
      }),
    });
  });
  after(async () => {
    await fast?.close();
    await guarded?.close();
  });

  /** Sends `text` as it is; returns what the upstream received for it. */
  async function sent(s: ChatStack, text: string) {
    const before = s.fake.requests.length;
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
      body: text,
    });
    assert.equal(res.status, 200, await res.text());
    const received = s.fake.requests.slice(before).filter((r) => r.path.endsWith('/chat/completions'));
    assert.equal(received.length, 1);
    return received[0]!.text;
  }

  // Bodies from 1 KiB on are forwarded (shorter ones cost less to serialize): a long system prompt.
  const system = `{"role":"system","content":"${'Answer briefly. '.repeat(70)}"}`;
  const odd =
    `{ "messages" : [ ${system}, {"role":"user","content":"say \\"model\\":\\"evil\\" \\u00e9 \\ud83d\\ude00"} ],\n` +
    '  "metadata": {"model": "not this one"}, "temperature": 1.0, "seed": 12345678901234567890,\n' +
    '  "model" : "gpt-4o-mini" , "user": "model" }';

  it('a body in any layout: byte for byte, the model where the client put it', async () => {
    assert.equal(await sent(fast, odd), odd);
    const first = `{"model":"gpt-4o-mini","messages":[${system},{"role":"user","content":"hi"}],"stream":false}`;
    assert.equal(await sent(fast, first), first);
  });

  it('an alias is rewritten to the deployment model in place, the key spelt as the client spelt it', async () => {
    const text = `{"mod\\u0065l":"ha-model",  "messages":[${system},{"role":"user","content":"hi"}]}`;
    assert.equal(
      await sent(fast, text),
      `{"mod\\u0065l":"gpt-4o-mini",  "messages":[${system},{"role":"user","content":"hi"}]}`,
    );
  });

  const serialized: [string, string][] = [
    [
      'a repeated key (which copy would the upstream read?)',
      `{"model":"gpt-4o-mini","messages":[${system},{"role":"user","content":"a","content":"b"}]}`,
    ],
    [
      'stream_options without a stream (dropped, stream: false set)',
      `{"model":"gpt-4o-mini","messages":[${system},{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`,
    ],
    ['a short body (under 1 KiB)', '{"model":"gpt-4o-mini",  "messages":[{"role":"user","content":"hi"}]}'],
  ];
  for (const [title, text] of serialized)
    it(`${title}: serialized from what Colloquy parsed, as before`, async () => {
      const received = await sent(fast, text);
      assert.notEqual(received, text);
      const parsed = JSON.parse(text) as Record<string, unknown>;
      delete parsed.stream_options;
      assert.deepEqual(JSON.parse(received), { ...parsed, stream: false });
    });

  it('with a guardrail on the input, the checked body is serialized, not the client bytes', async () => {
    const received = await sent(guarded, odd);
    assert.notEqual(received, odd);
    assert.deepEqual(JSON.parse(received), { ...JSON.parse(odd), stream: false });
  });
});
