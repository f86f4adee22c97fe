/**
 * The mails Colloquy sends, in the languages the product serves (English, Chinese), each with a text and an
 * HTML part. Every value put into the HTML is escaped: an address or a key name cannot inject markup.
 */
export type Locale = 'en' | 'zh';
export const LOCALES: readonly Locale[] = ['en', 'zh'];

export type MailKind =
  | 'password_reset'
  | 'verify_email'
  | 'invitation'
  | 'password_changed'
  | 'api_key_created'
  | 'api_key_revoked';

export interface MailVars {
  /** The recipient's address (shown, never trusted as markup). */
  email: string;
  /** The action link (reset, verify, invitation), built on PUBLIC_URL. */
  link?: string;
  /** How long the link works, in minutes. */
  minutes?: number;
  /** The role an invitation grants. */
  role?: string;
  /** The API key's name and prefix (notices). */
  keyName?: string;
  keyPrefix?: string;
}

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

/**
 * Picks the mail language from an Accept-Language header: the most preferred language Colloquy serves,
 * English when none is (or the header is absent).
 */
export function pickLocale(acceptLanguage: string | undefined): Locale {
  if (!acceptLanguage) return 'en';
  const ranked = acceptLanguage
    .split(',')
    .map((part, index) => {
      const [tag = '', ...params] = part.trim().split(';');
      const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)?.[1]).find(Boolean);
      return { tag: tag.trim().toLowerCase(), q: q === undefined ? 1 : Number(q), index };
    })
    .filter((l) => l.tag && l.q > 0)
    .sort((a, b) => b.q - a.q || a.index - b.index);
  for (const { tag } of ranked) {
    const primary = tag.split('-')[0];
    if (primary === 'zh') return 'zh';
    if (primary === 'en') return 'en';
  }
  return 'en';
}

export const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface Template {
  subject: (v: MailVars) => string;
  /** Paragraphs; a paragraph may be the link (rendered as a button in HTML, as the bare URL in text). */
  body: (v: MailVars) => (string | { link: string; label: string })[];
}

const key = (v: MailVars) => `${v.keyName ?? ''} (${v.keyPrefix ?? ''}…)`;

const TEMPLATES: Record<Locale, Record<MailKind, Template>> = {
  en: {
    password_reset: {
      subject: () => 'Reset your Colloquy password',
      body: (v) => [
        `Someone (hopefully you) asked to reset the password of the Colloquy account ${v.email}.`,
        { link: v.link ?? '', label: 'Choose a new password' },
        `The link works once, for ${v.minutes} minutes. If you did not ask for it, ignore this mail: your password stays as it is.`,
      ],
    },
    verify_email: {
      subject: () => 'Confirm your email address for Colloquy',
      body: (v) => [
        `Confirm that ${v.email} is your address to finish creating your Colloquy account.`,
        { link: v.link ?? '', label: 'Confirm my address' },
        `The link works once, for ${v.minutes} minutes. If you did not sign up, ignore this mail.`,
      ],
    },
    invitation: {
      subject: () => 'You are invited to Colloquy',
      body: (v) => [
        `An administrator invited ${v.email} to Colloquy (role: ${v.role}).`,
        { link: v.link ?? '', label: 'Accept the invitation' },
        `The link works once, for ${Math.round((v.minutes ?? 0) / 1440)} days.`,
      ],
    },
    password_changed: {
      subject: () => 'Your Colloquy password was changed',
      body: (v) => [
        `The password of the Colloquy account ${v.email} was just changed, and its other sessions were signed out.`,
        'If this was not you, reset your password at once and tell your administrator.',
      ],
    },
    api_key_created: {
      subject: () => 'A new API key was created for your Colloquy account',
      body: (v) => [
        `The API key ${key(v)} was created for the Colloquy account ${v.email}.`,
        'If this was not you, revoke it in the console and tell your administrator.',
      ],
    },
    api_key_revoked: {
      subject: () => 'An API key of your Colloquy account was revoked',
      body: (v) => [
        `The API key ${key(v)} of the Colloquy account ${v.email} was revoked; it no longer works.`,
      ],
    },
  },
  zh: {
    password_reset: {
      subject: () => '重置您的 Colloquy 密码',
      body: (v) => [
        `有人（希望是您本人）请求重置 Colloquy 账户 ${v.email} 的密码。`,
        { link: v.link ?? '', label: '设置新密码' },
        `该链接仅可使用一次，${v.minutes} 分钟内有效。如果这不是您的请求，请忽略此邮件，您的密码不会改变。`,
      ],
    },
    verify_email: {
      subject: () => '确认您在 Colloquy 的邮箱地址',
      body: (v) => [
        `请确认 ${v.email} 是您的邮箱地址，以完成 Colloquy 账户的创建。`,
        { link: v.link ?? '', label: '确认邮箱地址' },
        `该链接仅可使用一次，${v.minutes} 分钟内有效。如果您没有注册，请忽略此邮件。`,
      ],
    },
    invitation: {
      subject: () => '您受邀加入 Colloquy',
      body: (v) => [
        `管理员邀请 ${v.email} 加入 Colloquy（角色：${v.role}）。`,
        { link: v.link ?? '', label: '接受邀请' },
        `该链接仅可使用一次，${Math.round((v.minutes ?? 0) / 1440)} 天内有效。`,
      ],
    },
    password_changed: {
      subject: () => '您的 Colloquy 密码已更改',
      body: (v) => [
        `Colloquy 账户 ${v.email} 的密码刚刚被更改，其他会话已全部退出登录。`,
        '如果这不是您本人操作，请立即重置密码并联系管理员。',
      ],
    },
    api_key_created: {
      subject: () => '您的 Colloquy 账户新建了一个 API 密钥',
      body: (v) => [
        `Colloquy 账户 ${v.email} 新建了 API 密钥 ${key(v)}。`,
        '如果这不是您本人操作，请在控制台中吊销该密钥并联系管理员。',
      ],
    },
    api_key_revoked: {
      subject: () => '您的 Colloquy 账户的一个 API 密钥已被吊销',
      body: (v) => [`Colloquy 账户 ${v.email} 的 API 密钥 ${key(v)} 已被吊销，不能再使用。`],
    },
  },
};

export function renderMail(kind: MailKind, locale: Locale, vars: MailVars): RenderedMail {
  const template = TEMPLATES[locale][kind];
  const parts = template.body(vars);
  const text = parts.map((p) => (typeof p === 'string' ? p : p.link)).join('\n\n');
  const html = [
    `<!doctype html><html lang="${locale}"><head><meta charset="utf-8"></head>`,
    '<body style="font-family:sans-serif;line-height:1.5">',
    ...parts.map((p) =>
      typeof p === 'string'
        ? `<p>${escapeHtml(p)}</p>`
        : `<p><a href="${escapeHtml(p.link)}">${escapeHtml(p.label)}</a></p><p style="font-size:small">${escapeHtml(p.link)}</p>`,
    ),
    '</body></html>',
  ].join('\n');
  return { subject: template.subject(vars), text: `${text}\n`, html };
}
