import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../core/errors.js';
import type { ChatCompletionChunk, ChunkDelta, StreamEvent } from '../../providers/types.js';
import { PiiCheck } from './checks/pii.js';
import { RegexCheck } from './checks/regex.js';
import type { Check } from './checks/types.js';
import type { Guardrail, GuardrailSet } from './config.js';
import { guardStream, releasePoint } from './output-stream.js';
import { applyStage, type Verdict } from './pipeline.js';

const chunk = (delta: ChunkDelta, extra: Partial<ChatCompletionChunk> = {}): StreamEvent => ({
  chunk: {
    id: 'c',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'm',
    choices: [{ index: 0, delta, finish_reason: null }],
    ...extra,
  },
  raw: '{"upstream":"bytes"}',
});

async function* events(list: StreamEvent[]) {
  for (const e of list) yield e;
}

const guardrail = (
  check: Check,
  action: Guardrail['action'] = 'block',
  more: Partial<Guardrail> = {},
): Guardrail => ({
  name: 'house-rules',
  stage: 'output',
  action,
  kind: 'regex',
  check,
  failClosed: true,
  timeoutMs: 50,
  ...more,
});
const set = (...output: Guardrail[]): GuardrailSet => ({
  input: [],
  parallel: [],
  output,
  structured: [],
  reminders: [],
  holdbackChars: 40,
});

/** Everything the stream released, and the error that ended it (if any). */
async function run(list: StreamEvent[], guards: GuardrailSet, verdicts: Verdict[] = []) {
  const out: StreamEvent[] = [];
  let error: unknown;
  try {
    for await (const e of guardStream(events(list), guards, (v) => verdicts.push(v))) out.push(e);
  } catch (err) {
    error = err;
  }
  const text = out.map((e) => e.chunk.choices[0]?.delta?.content ?? '').join('');
  return { out, text, error };
}

const deny = new RegexCheck({ deny: ['(?i)forbidden phrase'] });

describe('guardStream', () => {
  it('a phrase split into one-character chunks is caught; the sentence holding it is never released', async () => {
    const reply = 'First sentence is fine. Then the forbidden phrase arrives. Never seen.';
    const { text, error, out } = await run(
      [...reply].map((c) => chunk({ content: c })),
      set(guardrail(deny)),
    );
    assert.ok(error instanceof AppError && error.code === 'guardrail_blocked');
    assert.equal(text, 'First sentence is fine. ');
    // The upstream's bytes are never relayed: only the checked text is.
    assert.ok(out.every((e) => e.raw === undefined && e.native === undefined));
  });

  it('a clean stream arrives whole, in order, with tool-call deltas, the finish and the usage chunk', async () => {
    const list: StreamEvent[] = [
      chunk({ role: 'assistant', content: '' }),
      ...'Let me look that up for you'.split(' ').map((w) => chunk({ content: `${w} ` })),
      chunk({
        tool_calls: [{ index: 0, id: 't1', type: 'function', function: { name: 'f', arguments: '' } }],
      }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] }),
      {
        chunk: {
          ...chunk({}).chunk,
          choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' as const }],
        },
      },
      {
        chunk: {
          ...chunk({}).chunk,
          choices: [],
          usage: { prompt_tokens: 3, completion_tokens: 9, total_tokens: 12 },
        },
      },
    ];
    const { out, text, error } = await run(list, set(guardrail(deny)));
    assert.equal(error, undefined);
    assert.equal(text, 'Let me look that up for you ');
    const kinds = out.map((e) => {
      const c = e.chunk.choices[0];
      if (e.chunk.usage) return 'usage';
      if (c?.finish_reason) return 'finish';
      if (c?.delta.tool_calls) return `tool:${c.delta.tool_calls[0]!.function?.arguments ?? ''}`;
      if (c?.delta.role) return 'role';
      return 'text';
    });
    // The text is released before the tool call that followed it; the call is held until its arguments are
    // complete (checked whole), then sent in one delta with its id and name.
    assert.deepEqual(kinds, ['role', 'text', 'tool:{"q":"x"}', 'finish', 'usage']);
    const call = out.find((e) => e.chunk.choices[0]?.delta.tool_calls)!.chunk.choices[0]!.delta
      .tool_calls![0]!;
    assert.deepEqual(call, {
      index: 0,
      id: 't1',
      type: 'function',
      function: { name: 'f', arguments: '{"q":"x"}' },
    });
  });

  it('reasoning is checked in its own window: a phrase split across reasoning deltas never goes out', async () => {
    const thought = 'Thinking it over. The user wants the forbidden phrase here. Ok.';
    const { out, error } = await run(
      [
        chunk({ role: 'assistant' }),
        ...[...thought].map((c) => chunk({ reasoning_content: c })),
        chunk({ content: 'Answer.' }),
      ],
      set(guardrail(deny)),
    );
    assert.ok(error instanceof AppError && error.code === 'guardrail_blocked');
    const sent = out.map((e) => e.chunk.choices[0]?.delta.reasoning_content ?? '').join('');
    assert.equal(sent, 'Thinking it over. ');
  });

  it('redacts PII in streamed reasoning; a refusal is checked too', async () => {
    const thought = 'Mail jane.doe@example.com later. Ok.';
    const { out, error } = await run(
      [...thought].map((c) => chunk({ reasoning_content: c })),
      set(guardrail(new PiiCheck(), 'redact')),
    );
    assert.equal(error, undefined);
    assert.equal(
      out.map((e) => e.chunk.choices[0]?.delta.reasoning_content ?? '').join(''),
      'Mail [EMAIL] later. Ok.',
    );
    const refused = await run(
      [chunk({ refusal: 'I will not say the forbidden phrase.' })],
      set(guardrail(deny)),
    );
    assert.ok(refused.error instanceof AppError && refused.error.code === 'guardrail_blocked');
    assert.doesNotMatch(JSON.stringify(refused.out), /forbidden/);
  });

  it("a thinking block's text is reasoning too; its signature still goes out after the checked text", async () => {
    const { out, error } = await run(
      [
        chunk({ thinking_blocks: [{ type: 'thinking', thinking: 'All fine here. ' }] }),
        chunk({ thinking_blocks: [{ type: 'thinking', thinking: '', signature: 'sig' }] }),
        chunk({ content: 'Done.' }),
      ],
      set(guardrail(deny)),
    );
    assert.equal(error, undefined);
    const deltas = out.map((e) => e.chunk.choices[0]?.delta);
    assert.equal(deltas.map((d) => d?.reasoning_content ?? '').join(''), 'All fine here. ');
    assert.ok(deltas.every((d) => !d?.thinking_blocks?.some((b) => b.type === 'thinking' && b.thinking)));
    const signed = deltas.findIndex((d) => d?.thinking_blocks?.[0]?.type === 'thinking');
    assert.ok(signed > deltas.findIndex((d) => d?.reasoning_content));

    const bad = await run(
      [chunk({ thinking_blocks: [{ type: 'thinking', thinking: 'the forbidden phrase' }] })],
      set(guardrail(deny)),
    );
    assert.ok(bad.error instanceof AppError && bad.error.code === 'guardrail_blocked');
    assert.doesNotMatch(JSON.stringify(bad.out), /forbidden/);
  });

  it('tool-call arguments split across chunks are checked whole; a redacting guardrail blocks them', async () => {
    const parts = ['{"q":"the forb', 'idden ph', 'rase"}'];
    const list = (args: string[]) => [
      chunk({
        tool_calls: [{ index: 0, id: 't1', type: 'function', function: { name: 'f', arguments: '' } }],
      }),
      ...args.map((a) => chunk({ tool_calls: [{ index: 0, function: { arguments: a } }] })),
      chunk({
        tool_calls: [{ index: 1, id: 't2', type: 'function', function: { name: 'g', arguments: '{}' } }],
      }),
    ];
    const blockedRun = await run(list(parts), set(guardrail(deny)));
    assert.ok(blockedRun.error instanceof AppError && blockedRun.error.code === 'guardrail_blocked');
    assert.doesNotMatch(JSON.stringify(blockedRun.out), /forb|idden|ph/);

    const verdicts: Verdict[] = [];
    const pii = await run(
      list(['{"to":"jane.doe@', 'example.com"}']),
      set(guardrail(new PiiCheck(), 'redact')),
      verdicts,
    );
    assert.ok(pii.error instanceof AppError && pii.error.code === 'guardrail_blocked');
    assert.doesNotMatch(JSON.stringify(pii.out), /jane|example/);
    assert.equal(verdicts[0]?.action, 'block');
  });

  it('releases at sentence ends, or at a space once the hold-back is full', () => {
    assert.equal(releasePoint('One. Two', 200), 5);
    assert.equal(releasePoint('Pi is 3.', 200), 0); // maybe a decimal point: wait
    assert.equal(releasePoint('你好。再见', 200), 3);
    assert.equal(releasePoint('word '.repeat(20), 40), 40);
    assert.equal(releasePoint('x'.repeat(50), 40), 40);
  });

  it('redacts PII in the stream, even split across chunks', async () => {
    const reply = 'Write to jane.doe@example.com today. Thanks.';
    const { text, error } = await run(
      [...reply].map((c) => chunk({ content: c })),
      set(guardrail(new PiiCheck(), 'redact')),
    );
    assert.equal(error, undefined);
    assert.equal(text, 'Write to [EMAIL] today. Thanks.');
  });

  it('flag records a verdict and lets the text through', async () => {
    const verdicts: Verdict[] = [];
    const { text } = await run(
      [chunk({ content: 'a forbidden phrase.' })],
      set(guardrail(deny, 'flag')),
      verdicts,
    );
    assert.equal(text, 'a forbidden phrase.');
    assert.deepEqual(verdicts, [
      { guardrail: 'house-rules', stage: 'output', action: 'flag', category: 'deny' },
    ]);
  });
});

describe('fail-open / fail-closed', () => {
  const throwing: Check = {
    find() {
      throw new Error('boom');
    },
  };
  const hanging: Check = { find: () => new Promise(() => {}) };
  for (const [what, check, category] of [
    ['throws', throwing, 'error'],
    ['times out', hanging, 'timeout'],
  ] as const) {
    it(`a check that ${what} blocks when it fails closed`, async () => {
      const verdicts: Verdict[] = [];
      await assert.rejects(
        applyStage([guardrail(check)], 'text', (v) => verdicts.push(v)),
        (err: unknown) => {
          return err instanceof AppError && err.code === 'guardrail_blocked';
        },
      );
      assert.deepEqual(
        verdicts.map((v) => [v.action, v.category]),
        [['block', category]],
      );
    });
    it(`a check that ${what} lets the text through when it fails open`, async () => {
      const verdicts: Verdict[] = [];
      const text = await applyStage([guardrail(check, 'block', { failClosed: false })], 'text', (v) =>
        verdicts.push(v),
      );
      assert.equal(text, 'text');
      assert.deepEqual(
        verdicts.map((v) => [v.action, v.category]),
        [['error', category]],
      );
    });
  }
});
