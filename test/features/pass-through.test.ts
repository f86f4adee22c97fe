import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type ChatStack, defaultRouting, startChatStack } from '../helpers/chat-stack.js';

/**
 * Issue 26's pass-through: a non-streaming /v1/chat/completions answer from an OpenAI-format upstream that
 * nothing transforms is sent as the upstream's bytes instead of being serialized again. The full path is the
 * same stack with an output guardrail that never fires (a guarded answer is always rebuilt): both must give a
 * client the same answer, the same headers, the same ledger row and the same request metrics.
 */
const REPLY = 'A plain answer, with "quotes", a tab\tand ünïcödé — nothing a guardrail objects to.';

describe('pass-through bodies: parity with the full path', () => {
  let fast: ChatStack;
  let full: ChatStack;
  before(async () => {
    fast = await startChatStack({ fakeOptions: { reply: REPLY } });
    full = await startChatStack({
      fakeOptions: { reply: REPLY },
      routing: (backup) => ({
        ...defaultRouting(backup),
        guardrails: [
          { name: 'never', check: 'regex', deny: ['zzz-never-said-zzz'], stage: 'output', action: 'block' },
        ],
      }),
    });
  });
  after(async () => {
    await fast?.close();
    await full?.close();
  });

  const post = (s: ChatStack, body: unknown) =>
    fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  /** The fields every answer has of its own (ids, times), so two answers can be compared. */
  const stable = (text: string) =>
    text.replace(/"id":"[^"]*"/, '"id":"ID"').replace(/"created":\d+/, '"created":0');
  const IGNORED_HEADERS = new Set(['date', 'x-request-id', 'keep-alive', 'connection']);
  const headersOf = (res: Response) =>
    Object.fromEntries([...res.headers].filter(([name]) => !IGNORED_HEADERS.has(name)));
  const requestMetrics = async (s: ChatStack) => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => l.startsWith('colloquy_http_request_duration_seconds_count{') && l.includes('/v1/chat'));
  };

  const bodies = [
    { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] },
    {
      model: 'gpt-4o-mini',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello again' },
      ],
      temperature: 0.2,
      user: 'someone',
      stream: false,
    },
    { model: 'ha-model', messages: [{ role: 'user', content: 'Through an alias' }] },
  ];

  for (const [i, body] of bodies.entries()) {
    it(`request ${i + 1}: the same answer, headers and ledger row on both paths`, async () => {
      const [a, b] = [await post(fast, body), await post(full, body)];
      const [textA, textB] = [await a.text(), await b.text()];
      assert.equal(a.status, 200, textA);
      assert.equal(b.status, 200, textB);
      assert.equal(stable(textA), stable(textB));
      assert.deepEqual(headersOf(a), headersOf(b));
      const answer = JSON.parse(textA) as { choices: { message: { content: string } }[]; usage: unknown };
      assert.equal(answer.choices[0]?.message.content, REPLY);

      const [rowA, rowB] = [
        await fast.usageRow(a.headers.get('x-request-id')!),
        await full.usageRow(b.headers.get('x-request-id')!),
      ];
      const comparable = (row: Record<string, unknown>) => {
        const { id, request_id, user_id, api_key_id, created_at, latency_ms, ...rest } = row;
        return rest;
      };
      assert.deepEqual(comparable(rowA), comparable(rowB));
      assert.equal(rowA.status, 'ok');
      assert.deepEqual(answer.usage, {
        prompt_tokens: rowA.prompt_tokens,
        completion_tokens: rowA.completion_tokens,
        total_tokens: Number(rowA.prompt_tokens) + Number(rowA.completion_tokens),
      });
    });
  }

  it('counts the requests in the same metrics', async () => {
    assert.deepEqual(await requestMetrics(fast), await requestMetrics(full));
    assert.ok((await requestMetrics(fast)).some((l) => l.includes('status_code="200"') && / 3$/.test(l)));
  });

  const incomplete = {
    choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
  };
  const cases: [string, Parameters<ChatStack['fake']['queue']>[0]][] = [
    [
      'an answer without the fields OpenAI always sends is completed',
      { kind: 'status', status: 200, body: incomplete },
    ],
    ['an answer that is not JSON is retried', { kind: 'not-json' }],
    [
      'an answer without choices is retried',
      { kind: 'status', status: 200, body: { id: 'x', object: 'chat.completion' } },
    ],
  ];
  for (const [title, fault] of cases) {
    it(`${title}, on both paths alike`, async () => {
      const texts: string[] = [];
      for (const s of [fast, full]) {
        s.fake.queue(fault);
        const res = await post(s, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
        texts.push(`${res.status} ${res.headers.get('content-type')} ${stable(await res.text())}`);
      }
      assert.equal(texts[0], texts[1]);
      // A broken answer is retried (a protocol error is retryable): the retry is answered normally.
      assert.match(texts[0]!, /^200 application\/json/);
    });
  }
});
