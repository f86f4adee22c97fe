import { normalizeForMatching } from '../normalize.js';
import type { Check, Finding } from './types.js';

/**
 * Prompt-injection and jailbreak heuristics (issue 22), English and Chinese: a scored rule set, each rule a
 * pattern over the normalised text (normalize.ts: case, width, zero-width and homoglyphs folded) with a
 * weight; the text triggers when the weights of the rules that match reach the threshold (default 1).
 *
 * No maintained, licensed list fits (the public ones are datasets of attacks, not rules): the rules below
 * are written from the attack families in OWASP's LLM01 (Prompt Injection) guidance — instruction
 * override, role reassignment, system-prompt extraction, "developer / DAN mode", delimiter forgery — and
 * measured on test/guardrails/corpus/injection.jsonl (precision and recall in the README). A strong rule
 * (an override of previous instructions) triggers alone; weak signals (a role play request, a fake
 * delimiter) need a second one, so "pretend you are a pirate" passes.
 */
export interface InjectionRule {
  id: string;
  weight: number;
  pattern: RegExp;
}

const IGNORE = '(?:ignore|disregard|forget|override|bypass|skip)';
const PRIOR = '(?:previous|prior|above|earlier|preceding|all|any|your|the|system|initial|original)';
const RULES_TEXT =
  '(?:instructions?|rules|prompts?|directives|guidelines|guardrails|polic(?:y|ies)|constraints)';

export const INJECTION_RULES: InjectionRule[] = [
  {
    id: 'override',
    weight: 1,
    pattern: new RegExp(`\\b${IGNORE}\\s+(?:\\w+\\s+){0,3}${PRIOR}\\s+(?:\\w+\\s+){0,2}${RULES_TEXT}`, 'u'),
  },
  {
    id: 'forget-everything',
    weight: 1,
    pattern:
      /\b(?:forget|ignore|disregard)\s+(?:everything|all)\s+(?:above|before|you (?:were|have been) told)\b/u,
  },
  {
    id: 'override-zh',
    weight: 1,
    pattern:
      /(?:忽略|无视|忘记|忘掉|不要理会|绕过)(?:掉)?(?:之前|以上|上面|前面|所有|你的|系统|的){0,4}(?:指令|指示|规则|提示|设定|限制)/u,
  },
  {
    id: 'reveal-system',
    weight: 1,
    pattern:
      /\b(?:reveal|print|show|repeat|output|tell|display|leak|dump)\s+(?:me\s+)?(?:your\s+(?:system prompt|hidden (?:prompt|instructions)|initial (?:prompt|instructions)|instructions|prompt)|the\s+(?:system prompt|hidden (?:prompt|instructions)|initial (?:prompt|instructions)))\b/u,
  },
  {
    id: 'reveal-system-zh',
    weight: 1,
    pattern:
      /(?:显示|输出|告诉我|泄露|重复|打印)(?:你的|一下)?(?:系统提示|系统指令|隐藏指令|初始指令|提示词)/u,
  },
  {
    id: 'dan',
    weight: 1,
    pattern: /\b(?:dan mode|do anything now|developer mode (?:enabled|on)|jailbreak(?:ed)? mode)\b/u,
  },
  { id: 'god-mode', weight: 0.5, pattern: /\bgod mode\b/u },
  {
    id: 'no-rules',
    weight: 0.6,
    pattern:
      /\b(?:without|no|free (?:of|from))\s+(?:any\s+)?(?:restrictions|filters|limitations|censorship|guidelines|rules)\b/u,
  },
  { id: 'no-rules-zh', weight: 0.6, pattern: /(?:没有|不受|不受任何|解除)(?:任何)?(?:限制|约束|审查|过滤)/u },
  {
    id: 'new-role',
    weight: 0.5,
    pattern: /\b(?:you are now|from now on,? you are|act as|pretend (?:to be|you are)|roleplay as)\b/u,
  },
  { id: 'new-role-zh', weight: 0.5, pattern: /(?:从现在开始你是|你现在是|扮演|假装你是)/u },
  {
    id: 'fake-delimiter',
    weight: 0.5,
    pattern:
      /(?:<\/?(?:system|im_start|im_end)>|\[\/?(?:system|inst)\]|#{2,}\s*(?:system|new instructions)|<\|im_start\|>)/u,
  },
  {
    id: 'new-instructions',
    weight: 0.6,
    pattern: /\b(?:new|updated|real|actual) (?:instructions|rules|task)\s*:/u,
  },
  { id: 'new-instructions-zh', weight: 0.6, pattern: /(?:新的|真正的)(?:指令|任务|规则)[:：]/u },
  { id: 'evil', weight: 0.5, pattern: /\b(?:unfiltered|uncensored|evil|amoral|no morals)\b/u },
];

export class InjectionCheck implements Check {
  readonly #threshold: number;
  readonly #rules: InjectionRule[];

  constructor(options: { threshold?: number | undefined } = {}, rules = INJECTION_RULES) {
    this.#threshold = options.threshold ?? 1;
    this.#rules = rules;
  }

  /** The weights of the rules the text matches, summed, and which ones. */
  score(text: string): { score: number; rules: string[] } {
    const normalized = normalizeForMatching(text);
    let score = 0;
    const rules: string[] = [];
    for (const rule of this.#rules)
      if (rule.pattern.test(normalized)) {
        score += rule.weight;
        rules.push(rule.id);
      }
    return { score, rules };
  }

  find(text: string): Finding[] {
    const { score } = this.score(text);
    return score >= this.#threshold ? [{ category: 'injection', start: 0, end: text.length }] : [];
  }
}
