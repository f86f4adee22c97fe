import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { readRoutingFile } from '../../config/routing-file.js';
import { buildGuardrails } from './config.js';

const SMALLEST = `guardrails:            # top level: applies to every request; assistants and keys add or override by name
  - name: pii
    check: pii
    stage: input
    action: redact
  - name: house-rules
    check: regex
    deny: ["(?i)forbidden phrase"]
    stage: output
    action: block
`;

function read(text: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-guardrails-'));
  try {
    const file = path.join(dir, 'colloquy.yaml');
    writeFileSync(file, text);
    return readRoutingFile(file, {});
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('guardrails configuration', () => {
  it("accepts issue 22's smallest configuration as written", async () => {
    const { value, problems } = read(SMALLEST);
    assert.deepEqual(problems, []);
    const set = buildGuardrails(value!.guardrails!).value!;
    assert.deepEqual(
      set.input.map((g) => [g.name, g.action, g.failClosed]),
      [['pii', 'redact', true]],
    );
    assert.deepEqual(
      set.output.map((g) => [g.name, g.action]),
      [['house-rules', 'block']],
    );
    assert.equal(set.holdbackChars, 200);
    // `(?i)` became the i flag: the output check matches any case.
    assert.equal((await set.output[0]!.check.find('A FORBIDDEN Phrase')).length, 1);
  });

  it('names every problem at start: bad regex, duplicate name, unknown stage, wrong field', () => {
    const { problems } = read(`guardrails:
  - name: a
    check: regex
    deny: ["(unclosed"]
    stage: output
    action: block
  - name: a
    check: pii
    stage: input
    action: redact
    deny: ["x"]
`);
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /guardrails\[0\]\.deny\[0\]: not a valid regular expression/);
    assert.match(problems[1]!, /guardrails\[1\]\.name: "a" is used twice/);
    assert.match(problems[2]!, /guardrails\[1\]\.deny: only a regex check has deny/);
    const schema = read(
      'guardrails:\n  - name: b\n    check: regex\n    stage: sideways\n    action: block\n',
    );
    assert.match(
      schema.problems.join('\n'),
      /guardrails\[0\]\.stage: expected one of input, parallel, output/,
    );
  });

  it('a reminder is either every N turns or a break after a session length, not both', () => {
    const both = buildGuardrails([{ name: 'r', check: 'reminder', every_turns: 5, break_after_minutes: 60 }]);
    assert.match(both.problems.join('\n'), /every_turns or break_after_minutes, not both/);
    const breaks = buildGuardrails([{ name: 'b', check: 'reminder', break_after_minutes: 180 }]).value!;
    assert.equal(breaks.reminders[0]!.breakAfterMs, 180 * 60_000);
    assert.match(breaks.reminders[0]!.messages!.en!, /take a break/);
  });
});
