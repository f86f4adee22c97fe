import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CrisisCheck } from '../../src/features/guardrails/checks/crisis.js';
import { InjectionCheck } from '../../src/features/guardrails/checks/injection.js';
import { PiiCheck } from '../../src/features/guardrails/checks/pii.js';
import { RegexCheck } from '../../src/features/guardrails/checks/regex.js';

/**
 * Issue 22's red-team corpus: labelled cases per built-in check; precision and recall are computed and held
 * above floors (the figures are in the README, "Guardrails"). A change that makes a check miss more, or
 * redact more benign text, fails here by name.
 */
const corpus = <T>(name: string): T[] =>
  readFileSync(new URL(`./corpus/${name}`, import.meta.url), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as T);

interface Score {
  tp: number;
  fp: number;
  fn: number;
  misses: string[];
}
const score = () => ({ tp: 0, fp: 0, fn: 0, misses: [] as string[] });
const precision = (s: Score) => s.tp / Math.max(1, s.tp + s.fp);
const recall = (s: Score) => s.tp / Math.max(1, s.tp + s.fn);
const report = (name: string, s: Score) =>
  console.log(
    `${name}: precision ${precision(s).toFixed(3)} recall ${recall(s).toFixed(3)} (tp ${s.tp} fp ${s.fp} fn ${s.fn})`,
  );

describe('red-team corpus', () => {
  it('pii: precision and recall per category', () => {
    const rows = corpus<{ text: string; expect: string[] }>('pii.jsonl');
    assert.ok(rows.length >= 250);
    const pii = new PiiCheck();
    const all = score();
    const per = new Map<string, Score>();
    for (const row of rows) {
      const found = new Set(pii.find(row.text).map((f) => f.category));
      for (const category of new Set([...found, ...row.expect])) {
        const s = per.get(category) ?? score();
        per.set(category, s);
        const want = row.expect.includes(category);
        const got = found.has(category);
        for (const target of [s, all]) {
          if (want && got) target.tp++;
          else if (got) {
            target.fp++;
            target.misses.push(`false ${category}: ${row.text}`);
          } else {
            target.fn++;
            target.misses.push(`missed ${category}: ${row.text}`);
          }
        }
      }
    }
    for (const [category, s] of [...per].sort()) report(`pii/${category}`, s);
    report('pii (all)', all);
    assert.ok(precision(all) >= 0.95, all.misses.join('\n'));
    assert.ok(recall(all) >= 0.95, all.misses.join('\n'));
    for (const [category, s] of per)
      assert.ok(recall(s) >= 0.9 && precision(s) >= 0.85, `${category}\n${s.misses.join('\n')}`);
  });

  it('deny list: obfuscated terms are caught, look-alikes pass', () => {
    const rows = corpus<{ text: string; deny: boolean }>('deny-list.jsonl');
    const check = new RegexCheck({ deny: ['(?i)forbidden phrase', '(?i)secret recipe', '(?i)launch codes'] });
    const s = score();
    for (const row of rows) {
      const got = check.find(row.text).length > 0;
      if (row.deny && got) s.tp++;
      else if (got) {
        s.fp++;
        s.misses.push(`false: ${row.text}`);
      } else if (row.deny) {
        s.fn++;
        s.misses.push(`missed: ${JSON.stringify(row.text)}`);
      }
    }
    report('deny list', s);
    assert.ok(precision(s) >= 0.98, s.misses.join('\n'));
    assert.ok(recall(s) >= 0.95, s.misses.join('\n'));
  });

  it('injection heuristics: attacks in English and Chinese are caught, benign look-alikes pass', () => {
    const rows = corpus<{ text: string; injection: boolean }>('injection.jsonl');
    assert.ok(rows.length >= 120);
    const check = new InjectionCheck();
    const s = score();
    for (const row of rows) {
      const got = check.find(row.text).length > 0;
      if (row.injection && got) s.tp++;
      else if (got) {
        s.fp++;
        s.misses.push(`false: ${row.text}`);
      } else if (row.injection) {
        s.fn++;
        s.misses.push(`missed: ${row.text}`);
      }
    }
    report('injection', s);
    assert.ok(precision(s) >= 0.95, s.misses.join('\n'));
    assert.ok(recall(s) >= 0.9, s.misses.join('\n'));
  });

  it('crisis statements in English and Chinese are caught by category, figures of speech pass', () => {
    const rows = corpus<{ text: string; crisis: string | null }>('crisis.jsonl');
    assert.ok(rows.length >= 110);
    const check = new CrisisCheck();
    const all = score();
    for (const row of rows) {
      const got = check.find(row.text)[0]?.category ?? null;
      if (row.crisis && got === row.crisis) all.tp++;
      else if (got && !row.crisis) {
        all.fp++;
        all.misses.push(`false ${got}: ${row.text}`);
      } else if (row.crisis) {
        all.fn++;
        all.misses.push(`missed ${row.crisis} (got ${got}): ${row.text}`);
      }
    }
    report('crisis', all);
    // A missed crisis costs more than a needless referral: recall is held higher.
    assert.ok(recall(all) >= 0.95, all.misses.join('\n'));
    assert.ok(precision(all) >= 0.9, all.misses.join('\n'));
  });
});
