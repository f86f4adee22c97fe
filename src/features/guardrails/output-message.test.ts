import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError } from '../../core/errors.js';
import { PiiCheck } from './checks/pii.js';
import { RegexCheck } from './checks/regex.js';
import type { Check } from './checks/types.js';
import type { Guardrail, GuardrailSet } from './config.js';
import { guardMessage } from './output-message.js';
import { MaskTable, type Verdict } from './pipeline.js';

const guardrail = (check: Check, action: Guardrail['action']): Guardrail => ({
  name: 'house-rules',
  stage: 'output',
  action,
  kind: 'regex',
  check,
  failClosed: true,
  timeoutMs: 50,
});
const set = (...output: Guardrail[]): GuardrailSet => ({
  input: [],
  parallel: [],
  output,
  structured: [],
  reminders: [],
  holdbackChars: 40,
});
const context = () => ({ requestId: 'r', masks: new MaskTable() });
const deny = guardrail(new RegexCheck({ deny: ['(?i)forbidden phrase'] }), 'block');
const isBlock = (err: unknown) => err instanceof AppError && err.code === 'guardrail_blocked';

describe('guardMessage', () => {
  it('blocks on the phrase in the reasoning, a thinking block, the refusal or a tool call', async () => {
    const cases = [
      { reasoning_content: 'the forbidden phrase' },
      { thinking_blocks: [{ type: 'thinking' as const, thinking: 'the forbidden phrase', signature: 's' }] },
      { refusal: 'no: forbidden phrase' },
      {
        tool_calls: [
          {
            id: 't',
            type: 'function' as const,
            function: { name: 'f', arguments: '{"a":"forbidden phrase"}' },
          },
        ],
      },
    ];
    for (const extra of cases)
      await assert.rejects(
        guardMessage({ role: 'assistant', content: 'fine', ...extra }, set(deny), () => {}, context()),
        isBlock,
      );
  });

  it('redacts reasoning like text; a redacting guardrail blocks tool-call arguments instead', async () => {
    const pii = guardrail(new PiiCheck(), 'redact');
    const message = {
      role: 'assistant' as const,
      content: 'ok',
      reasoning_content: 'mail jane.doe@example.com',
      thinking_blocks: [{ type: 'thinking' as const, thinking: 'mail jane.doe@example.com', signature: 's' }],
    };
    const out = await guardMessage(message, set(pii), () => {}, context());
    assert.equal(out.reasoning_content, 'mail [EMAIL]');
    assert.deepEqual(out.thinking_blocks, [{ type: 'thinking', thinking: 'mail [EMAIL]', signature: 's' }]);

    const clean = { role: 'assistant' as const, content: 'ok', reasoning_content: 'nothing here' };
    assert.equal(await guardMessage(clean, set(pii), () => {}, context()), clean);

    const verdicts: Verdict[] = [];
    const call = {
      role: 'assistant' as const,
      content: null,
      tool_calls: [
        {
          id: 't',
          type: 'function' as const,
          function: { name: 'f', arguments: '{"to":"jane.doe@example.com"}' },
        },
      ],
    };
    await assert.rejects(
      guardMessage(call, set(pii), (v) => verdicts.push(v), context()),
      isBlock,
    );
    assert.equal(verdicts[0]?.action, 'block');
  });
});
