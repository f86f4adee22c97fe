import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StreamEvent } from '../../providers/types.js';
import type { Check } from './checks/types.js';
import { buildGuardrails, type Guardrail } from './config.js';
import { guardInput } from './input.js';
import { unmaskStream } from './masks.js';
import { applyStage, MaskTable, type Verdict } from './pipeline.js';

const chunk = (content: string, finish: 'stop' | null = null): StreamEvent => ({
  chunk: {
    id: 'c',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'm',
    choices: [{ index: 0, delta: { content }, finish_reason: finish }],
  },
});
async function* iterate(list: StreamEvent[]) {
  for (const e of list) yield e;
}
const text = async (events: AsyncIterable<StreamEvent>) => {
  let out = '';
  for await (const e of events) out += e.chunk.choices[0]?.delta?.content ?? '';
  return out;
};

describe('reversible masking', () => {
  const set = buildGuardrails([{ name: 'pii', check: 'pii', stage: 'input', action: 'mask' }]).value!;

  it('numbers placeholders per value and restores them, the same value keeping its placeholder', async () => {
    const masks = new MaskTable();
    const body = await guardInput(
      set.input,
      {
        model: 'm',
        messages: [
          { role: 'user', content: 'I am ann@example.com, cc bob@example.org.' },
          { role: 'user', content: 'Again: ann@example.com' },
        ],
      },
      () => {},
      { requestId: 'r', masks },
    );
    assert.deepEqual(
      body.messages.map((m) => m.content),
      ['I am [EMAIL_1], cc [EMAIL_2].', 'Again: [EMAIL_1]'],
    );
    const restored = await text(unmaskStream(iterate([chunk('Hi [EMAIL_2] and [EMAIL_1].')]), masks));
    assert.equal(restored, 'Hi bob@example.org and ann@example.com.');
  });

  it('restores a placeholder split across stream chunks, never sending half of it', async () => {
    const masks = new MaskTable();
    masks.placeholderFor('email', 'ann@example.com');
    masks.placeholderFor('phone', '+44 20 7946 0958');
    const pieces = [
      'Write to [',
      'EMA',
      'IL_',
      '1',
      '] or ring [PHONE_1',
      ']',
      ' now. [not a placeholder]',
      ' [EM',
    ];
    const seen: string[] = [];
    for await (const e of unmaskStream(iterate([...pieces.map((p) => chunk(p)), chunk('', 'stop')]), masks))
      seen.push(e.chunk.choices[0]?.delta?.content ?? '');
    assert.equal(
      seen.join(''),
      'Write to ann@example.com or ring +44 20 7946 0958 now. [not a placeholder] [EM',
    );
    // No chunk before the stream's end carries the start of a placeholder (the end flushes what is left).
    assert.ok(
      seen.slice(0, seen.indexOf('[EM')).every((s) => !/\[[A-Z_0-9]*$/.test(s)),
      seen.join('|'),
    );
  });
});

describe('independent checks run at the same time', () => {
  /** Two async checks that each finish only once the other has started: run one after the other, they time out. */
  it('block/flag/log checks next to each other start together, their verdicts in configured order', async () => {
    let started = 0;
    let release: () => void = () => {};
    const both = new Promise<void>((resolve) => {
      release = resolve;
    });
    const rendezvous = (category: string): Check => ({
      find: async (_text: string, _context?: unknown) => {
        started++;
        if (started === 2) release();
        await both;
        return [{ category, start: 0, end: 1 }];
      },
    });
    const guardrail = (name: string, action: Guardrail['action'], check: Check): Guardrail => ({
      name,
      stage: 'input',
      action,
      kind: 'webhook',
      check,
      failClosed: true,
      timeoutMs: 2_000,
    });
    const verdicts: Verdict[] = [];
    await applyStage(
      [guardrail('first', 'flag', rendezvous('a')), guardrail('second', 'log', rendezvous('b'))],
      'text',
      (v) => verdicts.push(v),
    );
    assert.deepEqual(
      verdicts.map((v) => [v.guardrail, v.action, v.category]),
      [
        ['first', 'flag', 'a'],
        ['second', 'log', 'b'],
      ],
    );
  });
});
