import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LOCALES, pickLocale, renderMail } from './templates.js';

describe('mail templates', () => {
  it('picks the most preferred language served, English otherwise', () => {
    assert.equal(pickLocale(undefined), 'en');
    assert.equal(pickLocale('zh-CN,zh;q=0.9,en;q=0.8'), 'zh');
    assert.equal(pickLocale('zh-Hant-TW'), 'zh');
    assert.equal(pickLocale('en;q=0.9,zh;q=0.95'), 'zh');
    assert.equal(pickLocale('fr-FR,de;q=0.9'), 'en');
    assert.equal(pickLocale('fr-FR,zh;q=0.5'), 'zh');
    assert.equal(pickLocale('zh;q=0,en'), 'en');
  });

  it('renders every kind in every language with text and HTML, values escaped in HTML only', () => {
    const hostile = '"><script>alert(1)</script>';
    for (const locale of LOCALES)
      for (const kind of [
        'password_reset',
        'verify_email',
        'invitation',
        'password_changed',
        'api_key_created',
        'api_key_revoked',
      ] as const) {
        const mail = renderMail(kind, locale, {
          email: `x${hostile}@example.com`,
          link: `https://chat.example.com/console/x?token=abc&x=${hostile}`,
          minutes: 30,
          role: 'user',
          keyName: hostile,
          keyPrefix: 'ck-12',
        });
        assert.ok(mail.subject.length > 0);
        assert.ok(mail.text.includes(hostile), `${kind}/${locale}: the text part holds the value as is`);
        assert.ok(!mail.html.includes('<script>'), `${kind}/${locale}: no markup injected`);
        assert.match(mail.html, new RegExp(`<html lang="${locale}">`));
      }
  });
});
