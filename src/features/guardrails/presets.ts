import type { GuardrailConfig } from './schema.js';

/**
 * Safety packs an operator turns on in one line (`GUARDRAILS_PRESET=child-safe` or `wellbeing`, or per key /
 * assistant / role through `POST /api/guardrails/presets/{name}/apply`). Every rule is an ordinary guardrail:
 * readable at `GET /api/guardrails/presets`, and overridden by giving a guardrail of the same name in the
 * routing file or the admin API (a disabled one switches it off).
 */

/** Explicit sexual terms for minor mode, English and Chinese: topics a tutoring app for children refuses. */
const SEXUAL_EN =
  '(?i)\\b(?:porn\\w*|nudes?|naked (?:pics?|photos?|pictures?|selfies?)|sext(?:ing)?|blow ?jobs?|hand ?jobs?|' +
  'orgasms?|masturbat\\w*|hentai|nsfw|xxx|have sex with|sex (?:chat|tape|video)s?|erotic\\w*|horny|' +
  'dick pics?|onlyfans)\\b';
const SEXUAL_ZH = '(?:色情|裸照|裸聊|做爱|性爱|自慰|黄片|黄色网站|约炮|一夜情|成人视频|援交)';

const crisis: GuardrailConfig = { name: 'crisis', check: 'crisis', stage: 'input', action: 'refer' };
const disclosure: GuardrailConfig = { name: 'ai-disclosure', check: 'reminder', every_turns: 10 };
/** Minor mode's break reminder after three hours of continuous use (sessions.ts). */
const breakReminder: GuardrailConfig = {
  name: 'break-reminder',
  check: 'reminder',
  break_after_minutes: 180,
};

export const PRESETS: Record<string, { description: string; guardrails: GuardrailConfig[] }> = {
  'child-safe': {
    description:
      'Minor mode for tutoring apps: crisis referral, personal data redacted, explicit sexual content ' +
      'blocked on input and output, injection attempts blocked, an AI disclosure at the first turn, every ' +
      '10 turns and when asked, and a break reminder after 3 hours of continuous use.',
    guardrails: [
      crisis,
      { name: 'pii', check: 'pii', stage: 'input', action: 'redact' },
      {
        name: 'minor-sexual-input',
        check: 'regex',
        deny: [SEXUAL_EN, SEXUAL_ZH],
        stage: 'input',
        action: 'block',
      },
      {
        name: 'minor-sexual-output',
        check: 'regex',
        deny: [SEXUAL_EN, SEXUAL_ZH],
        stage: 'output',
        action: 'block',
      },
      { name: 'injection', check: 'injection', stage: 'input', action: 'block' },
      disclosure,
      breakReminder,
    ],
  },
  wellbeing: {
    description:
      'Companion and wellbeing apps: crisis referral instead of the model, personal data masked before the ' +
      'model and restored in the answer, an AI disclosure at the first turn, every 10 turns and when asked.',
    guardrails: [crisis, { name: 'pii', check: 'pii', stage: 'input', action: 'mask' }, disclosure],
  },
};

export const PRESET_NAMES = Object.keys(PRESETS);
