import { normalizeForMatching } from '../normalize.js';
import type { Check, Finding } from './types.js';

/**
 * Crisis statements on user input (issue 22's safety pack): suicide, self-harm and abuse, in English and
 * Chinese. First-person statements of intent, plan or ongoing harm — not the topic: "kill the process", "this
 * homework is killing me", "a novel about suicide" and "我笑死了" must pass (the corpus holds such look-alikes,
 * test/guardrails/corpus/crisis.jsonl). A guardrail with this check answers with the operator's referral
 * (action `refer`) and the model is not called.
 *
 * The patterns follow the warning signs listed by the 988 Suicide & Crisis Lifeline ("talking about wanting to
 * die or to kill oneself", "looking for a way", "feeling hopeless or having no reason to live", "being a
 * burden"), and the Chinese equivalents used by 北京心理危机研究与干预中心's hotline material.
 */
interface CrisisRule {
  category: 'suicide' | 'self_harm' | 'abuse';
  language: 'en' | 'zh';
  pattern: RegExp;
}

const I =
  "(?:i|i'm|im|i am|i've|ive|i have|i'll|ill|i will|i want to|i wanna|i'm going to|i am going to|i feel like)";

export const CRISIS_RULES: CrisisRule[] = [
  {
    category: 'suicide',
    language: 'en',
    pattern: new RegExp(
      `\\b${I}\\s+(?:\\w+\\s+){0,3}(?:kill(?:ing)? myself|end(?:ing)? (?:my life|it all)|take my (?:own )?life|commit suicide|suicid(?:e|al))\\b`,
      'u',
    ),
  },
  {
    category: 'suicide',
    language: 'en',
    pattern:
      /\bi (?:\w+ ){0,2}want(?:ed)? to die\b(?! (?:my|your|his|her|the|a|it)\b)|\b(?:wish i (?:was|were) dead|better off dead|don'?t want to (?:live|be alive|wake up)|no reason to live|(?:how|ways?) to (?:kill myself|end my life|commit suicide)|(?:the )?world (?:would be )?better without me|(?:everyone|they) would be better off without me|goodbye forever|my suicide note|writing (?:a|my) (?:suicide|goodbye) note)\b/u,
  },
  {
    category: 'self_harm',
    language: 'en',
    pattern:
      /\b(?:i|i've|ive|i have|i keep|i want to|i)\s+(?:\w+\s+){0,2}(?:cut(?:ting)?|burn(?:ing)?|hurt(?:ing)?|harm(?:ing)?|starv(?:e|ing)) myself\b(?! (?:a|an|some|the|on|by accident)\b)|\bself[- ]harm(?:ing)? again\b/u,
  },
  {
    category: 'abuse',
    language: 'en',
    pattern:
      /\b(?:my|our)\s+(?:\w+\s+){0,2}(?:dad|father|mom|mother|stepdad|stepfather|stepmom|uncle|brother|sister|boyfriend|girlfriend|husband|wife|partner|teacher|coach)\s+(?:\w+\s+){0,2}(?:hits|beats|hurts|touches|touched|abuses|abused|rapes|raped|chokes|burns) me\b(?! (?:at|in|on|with a pillow)\b)|\b(?:i am|i'm|im|i was|i've been|ive been) (?:being )?(?:abused|molested|raped|beaten)\b/u,
  },
  {
    category: 'suicide',
    language: 'zh',
    pattern:
      /(?:我|自己)(?:真的|很|好)?(?:想|要|打算|准备|想要)(?:去)?(?:自杀|死(?!你|他|她|我了|了你)|结束(?:自己的)?生命|轻生|跳楼|了结自己)/u,
  },
  {
    category: 'suicide',
    language: 'zh',
    pattern:
      /(?:活着没(?:有)?意思|不想活(?:了|下去)|活不下去了|没有活下去的理由|我死了(?:大家|他们|所有人)?(?:会)?更好|遗书|怎么(?:样)?自杀|自杀(?:的)?方法)/u,
  },
  {
    category: 'self_harm',
    language: 'zh',
    pattern: /(?:我|又)(?:一直|经常|又|还是)?(?:在)?(?:割腕|自残|伤害自己|割自己|划自己|烫自己)/u,
  },
  {
    category: 'abuse',
    language: 'zh',
    pattern:
      /(?:爸爸|父亲|妈妈|母亲|继父|继母|叔叔|哥哥|老师|男朋友|老公|丈夫)(?:经常|总是|又|一直)?(?:打我(?!电话|手机)|虐待我|性侵我|摸我|掐我|揍我)|我(?:被)(?:家暴|虐待|性侵|强奸)/u,
  },
];

export class CrisisCheck implements Check {
  find(text: string): Finding[] {
    const normalized = normalizeForMatching(text).replace(/[’‘]/g, "'");
    for (const rule of CRISIS_RULES)
      if (rule.pattern.test(normalized))
        return [{ category: rule.category, start: 0, end: text.length, language: rule.language }];
    return [];
  }
}

/**
 * The referral templates shipped with the safety pack, per language; an operator overrides them with the
 * guardrail's `messages` (their region's lines). Numbers from the services' own pages: 988lifeline.org (US),
 * samaritans.org (UK/IE 116 123), 北京心理危机研究与干预中心 (010-82951332) and the 12356 national
 * psychological assistance line (China, 2025).
 */
export const DEFAULT_REFERRALS: Record<string, string> = {
  en:
    'It sounds like you are going through something really painful, and you deserve support from a person right now. ' +
    'You are not alone. In the US, call or text 988 (Suicide & Crisis Lifeline); in the UK or Ireland, call ' +
    'Samaritans on 116 123; elsewhere, call your local emergency number. If you are in immediate danger, call ' +
    'emergency services now.',
  zh:
    '听起来你正在经历很痛苦的事情，你值得马上得到真人的支持。你并不孤单。在中国大陆可拨打全国心理援助热线 12356，' +
    '或北京心理危机研究与干预中心热线 010-82951332；如有紧急危险，请立即拨打 110 或 120。',
};
