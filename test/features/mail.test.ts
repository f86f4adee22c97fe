// Mail (issue 24) against a real SMTP server in-process (smtp-server over TCP with STARTTLS and AUTH, see
// test/helpers/smtp.ts): every mail is parsed with mailparser and its link followed through the API.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config/load-config.js';
import { MailOutbox } from '../../src/features/mail/outbox.js';
import { runDoctor } from '../../src/ops/doctor.js';
import {
  assertError,
  bearer,
  createUser,
  startTestApp,
  TEST_MASTER_KEY,
  TEST_SECRET,
  type TestApp,
} from '../helpers/app.js';
import { createTestDatabase, DIALECTS } from '../helpers/databases.js';
import { freePort } from '../helpers/net.js';
import { linkIn, type Mailbox, type ReceivedMail, startMailbox } from '../helpers/smtp.js';

const tokenOf = (mail: ReceivedMail) => {
  const link = linkIn(mail);
  const token = link.searchParams.get('token');
  assert.ok(token, `no token in ${link}`);
  return { link, token };
};

/** Bounded polling of the outbox table. */
async function outboxRows(t: TestApp) {
  return t.database.db.selectFrom('mail_outbox').selectAll().orderBy('created_at').execute();
}
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const dialect of DIALECTS) {
  describe(`mail (${dialect})`, () => {
    let mailbox: Mailbox;
    before(async () => {
      mailbox = await startMailbox();
    });
    after(() => mailbox.close());

    it('password reset: 202 for known and unknown alike, a working single-use link, sessions signed out, a notice', async (t) => {
      const app = await startTestApp({ dialect, env: mailbox.env() });
      t.after(() => app.close());
      const user = await createUser(app, 'reset-me@example.com');
      const known = await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset',
        payload: { email: 'Reset-Me@example.com' },
      });
      const unknown = await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset',
        payload: { email: 'nobody@example.com' },
      });
      assert.equal(known.statusCode, 202);
      assert.equal(unknown.statusCode, 202);
      assert.equal(known.body, unknown.body, 'the same answer whether or not the address has an account');

      const [mail] = await mailbox.waitFor('reset-me@example.com');
      assert.ok(mail);
      assert.equal(mail.secure, true, 'sent after STARTTLS');
      assert.equal(mail.user, 'colloquy-mailer', 'logged in with SMTP_USERNAME');
      assert.match(mail.subject, /Reset your Colloquy password/);
      assert.ok(mail.html.includes('<a href="https://chat.colloquy.test/console/reset-password?token='));
      const { link, token } = tokenOf(mail);
      assert.equal(`${link.origin}${link.pathname}`, 'https://chat.colloquy.test/console/reset-password');
      // The token is stored hashed only.
      const stored = await app.database.db.selectFrom('mail_tokens').selectAll().execute();
      assert.equal(stored.length, 1);
      assert.notEqual(stored[0]!.token_hash, token);
      assert.ok(!JSON.stringify(stored).includes(token));

      // A weak password is refused and leaves the token usable.
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/auth/password-reset/confirm',
          payload: { token, password: 'short' },
        }),
        400,
        'weak_password',
      );
      const confirmed = await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset/confirm',
        payload: { token, password: 'a-brand-new-password' },
      });
      assert.equal(confirmed.statusCode, 204, confirmed.body);
      // Single use.
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/auth/password-reset/confirm',
          payload: { token, password: 'another-new-password' },
        }),
        400,
        'invalid_mail_token',
        'token',
      );
      // Every session of the account is signed out: its access token and its refresh token.
      assertError(
        await app.inject({ url: '/api/me', headers: bearer(user.accessToken) }),
        401,
        'invalid_token',
      );
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/auth/refresh',
          payload: { refresh_token: user.refreshToken },
        }),
        401,
        'invalid_token',
      );
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/auth/login',
          payload: { email: user.email, password: user.password },
        }),
        401,
        'invalid_credentials',
      );
      const login = await app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email: user.email, password: 'a-brand-new-password' },
      });
      assert.equal(login.statusCode, 200);

      const mails = await mailbox.waitFor('reset-me@example.com', 2);
      assert.match(mails[1]!.subject, /password was changed/);
      assert.equal(
        mailbox.received.filter((m) => m.to === 'nobody@example.com').length,
        0,
        'nothing is mailed to an address without an account',
      );
      // Sent mails keep no body (it held the single-use link).
      await until(async () => (await outboxRows(app)).every((r) => r.status === 'sent'), 'outbox drained');
      for (const row of await outboxRows(app)) assert.equal(row.text_body, '');
    });

    it('an unknown or expired token gets a clear 400', async (t) => {
      const app = await startTestApp({ dialect, env: mailbox.env() });
      t.after(() => app.close());
      await createUser(app, 'expired@example.com');
      await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset',
        payload: { email: 'expired@example.com' },
      });
      const { token } = tokenOf((await mailbox.waitFor('expired@example.com'))[0]!);
      await app.database.db
        .updateTable('mail_tokens')
        .set({ expires_at: new Date(Date.now() - 1000).toISOString() })
        .execute();
      for (const attempt of [token, 'not-a-token']) {
        assertError(
          await app.inject({
            method: 'POST',
            url: '/api/auth/password-reset/confirm',
            payload: { token: attempt, password: 'a-brand-new-password' },
          }),
          400,
          'invalid_mail_token',
        );
      }
    });

    it('reset requests are throttled per address (known or not) with a clear 429', async (t) => {
      const app = await startTestApp({ dialect, env: mailbox.env() });
      t.after(() => app.close());
      for (const email of ['throttled@example.com', 'nobody-throttled@example.com']) {
        for (let i = 0; i < 3; i++) {
          const res = await app.inject({
            method: 'POST',
            url: '/api/auth/password-reset',
            payload: { email },
          });
          assert.equal(res.statusCode, 202);
        }
        const refused = await app.inject({
          method: 'POST',
          url: '/api/auth/password-reset',
          payload: { email },
        });
        assertError(refused, 429, 'rate_limited');
        assert.ok(Number(refused.headers['retry-after']) > 0);
      }
      // Another address from the same client is still served.
      const other = await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset',
        payload: { email: 'someone-else@example.com' },
      });
      assert.equal(other.statusCode, 202);
    });

    it('sign-up verification: no sign-in until the mailed link (in Chinese for zh) is followed', async (t) => {
      const app = await startTestApp({
        dialect,
        env: mailbox.env({ ALLOW_SIGNUP: 'true', REQUIRE_EMAIL_VERIFICATION: 'true' }),
      });
      t.after(() => app.close());
      await createUser(app, 'first@example.com', 'admin');
      const credentials = { email: 'newcomer@example.com', password: 'newcomer-password-1' };
      const signup = await app.inject({
        method: 'POST',
        url: '/api/auth/signup',
        headers: { 'accept-language': 'zh-CN,zh;q=0.9,en;q=0.8' },
        payload: credentials,
      });
      assert.equal(signup.statusCode, 202, signup.body);
      assert.equal(signup.json().verification_required, true);
      assert.equal(signup.json().access_token, undefined);
      assertError(
        await app.inject({ method: 'POST', url: '/api/auth/login', payload: credentials }),
        403,
        'email_not_verified',
      );
      const [mail] = await mailbox.waitFor(credentials.email);
      assert.match(mail!.subject, /确认/);
      assert.match(mail!.text, /链接仅可使用一次/);
      const { link, token } = tokenOf(mail!);
      assert.equal(link.pathname, '/console/verify-email');
      const verified = await app.inject({
        method: 'POST',
        url: '/api/auth/verify-email',
        payload: { token },
      });
      assert.equal(verified.statusCode, 200, verified.body);
      assert.equal(verified.json().email, credentials.email);
      const login = await app.inject({ method: 'POST', url: '/api/auth/login', payload: credentials });
      assert.equal(login.statusCode, 200, login.body);
      assertError(
        await app.inject({ method: 'POST', url: '/api/auth/verify-email', payload: { token } }),
        400,
        'invalid_mail_token',
      );
      const options = (await app.inject({ url: '/api/auth/options' })).json();
      assert.deepEqual(options, {
        signup: true,
        mail: true,
        password_reset: true,
        email_verification_required: true,
        invitations: true,
      });
    });

    it('invitations: an admin invites with a role, the link creates the account once', async (t) => {
      const app = await startTestApp({ dialect, env: mailbox.env() });
      t.after(() => app.close());
      const admin = await createUser(app, 'inviter@example.com', 'admin');
      const plain = await createUser(app, 'plain-inviter@example.com');
      const body = { email: 'invitee@example.com', role: 'admin' };
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/invitations',
          headers: bearer(plain.accessToken),
          payload: body,
        }),
        403,
        'forbidden',
      );
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/invitations',
          headers: bearer(admin.accessToken),
          payload: { email: plain.email },
        }),
        409,
        'conflict',
      );
      const invited = await app.inject({
        method: 'POST',
        url: '/api/invitations',
        headers: bearer(admin.accessToken),
        payload: body,
      });
      assert.equal(invited.statusCode, 201, invited.body);
      assert.equal(invited.json().role, 'admin');
      const [mail] = await mailbox.waitFor(body.email);
      assert.match(mail!.text, /role: admin/);
      const { link, token } = tokenOf(mail!);
      assert.equal(link.pathname, '/console/accept-invitation');
      const accepted = await app.inject({
        method: 'POST',
        url: '/api/invitations/accept',
        payload: { token, password: 'invitee-password-1', display_name: 'Invitee' },
      });
      assert.equal(accepted.statusCode, 201, accepted.body);
      assert.equal(accepted.json().user.role, 'admin');
      assert.equal(accepted.json().user.email, body.email);
      const me = await app.inject({ url: '/api/me', headers: bearer(accepted.json().access_token) });
      assert.equal(me.json().display_name, 'Invitee');
      assertError(
        await app.inject({
          method: 'POST',
          url: '/api/invitations/accept',
          payload: { token, password: 'invitee-password-2' },
        }),
        400,
        'invalid_mail_token',
      );
    });

    it('notices: a changed password and a created or revoked API key are mailed, values HTML-escaped', async (t) => {
      const app = await startTestApp({ dialect, env: mailbox.env() });
      t.after(() => app.close());
      const user = await createUser(app, 'noticed@example.com');
      const created = await app.inject({
        method: 'POST',
        url: '/api/keys',
        headers: bearer(user.accessToken),
        payload: { name: '<b>ci</b> & "deploy"' },
      });
      assert.equal(created.statusCode, 201);
      const [keyMail] = await mailbox.waitFor(user.email);
      assert.match(keyMail!.subject, /new API key/);
      assert.ok(keyMail!.text.includes('<b>ci</b> & "deploy"'));
      assert.ok(keyMail!.html.includes('&#60;b&#62;ci&#60;/b&#62; &#38; &#34;deploy&#34;'), keyMail!.html);
      assert.ok(!keyMail!.html.includes('<b>ci</b>'));
      const revoke = () =>
        app.inject({
          method: 'DELETE',
          url: `/api/keys/${created.json().id}`,
          headers: bearer(user.accessToken),
        });
      assert.equal((await revoke()).statusCode, 200);
      assert.equal((await revoke()).statusCode, 200);
      const patched = await app.inject({
        method: 'PATCH',
        url: '/api/me',
        headers: bearer(user.accessToken),
        payload: { password: 'changed-password-1', current_password: user.password },
      });
      assert.equal(patched.statusCode, 200);
      const mails = await mailbox.waitFor(user.email, 3);
      assert.deepEqual(
        mails.map((m) => m.subject),
        [
          'A new API key was created for your Colloquy account',
          'An API key of your Colloquy account was revoked',
          'Your Colloquy password was changed',
        ],
      );
      await until(async () => (await outboxRows(app)).every((r) => r.status === 'sent'), 'outbox drained');
      assert.equal(
        mailbox.received.filter((m) => m.to === user.email).length,
        3,
        'a repeated revoke mails nothing',
      );
    });

    it('a killed SMTP server delays mail and loses none; it arrives once when the server is back', async (t) => {
      const box = await startMailbox();
      t.after(() => box.close());
      const testDb = await createTestDatabase(dialect);
      t.after(() => testDb.drop());
      const app = await startTestApp({ dialect, env: box.env(), testDb });
      t.after(() => app.close());
      await createUser(app, 'patient@example.com');
      await box.stop();
      const res = await app.inject({
        method: 'POST',
        url: '/api/auth/password-reset',
        payload: { email: 'patient@example.com' },
      });
      assert.equal(res.statusCode, 202);
      await until(async () => {
        const [row] = await outboxRows(app);
        return Boolean(row && row.status === 'pending' && Number(row.attempts) >= 2 && row.last_error);
      }, 'two failed attempts');
      const metrics = await app.inject({ url: '/metrics' });
      assert.match(metrics.body, /colloquy_mail_outbox_mails\{status="pending"[^}]*\} 1/);
      assert.match(metrics.body, /colloquy_mail_send_attempts_total\{kind="password_reset",result="retry"/);
      // A restart of Colloquy loses nothing either: a new app on the same database sends it.
      await app.close();
      const second = await startTestApp({ dialect, env: box.env(), testDb, migrate: false });
      t.after(() => second.close());
      await box.start();
      const [mail] = await box.waitFor('patient@example.com');
      assert.match(mail!.subject, /Reset your Colloquy password/);
      await until(async () => (await outboxRows(second))[0]?.status === 'sent', 'marked sent');
      // Several polls later, still exactly one.
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(box.received.length, 1);
      const { token } = tokenOf(mail!);
      const confirmed = await second.inject({
        method: 'POST',
        url: '/api/auth/password-reset/confirm',
        payload: { token, password: 'a-patient-password' },
      });
      assert.equal(confirmed.statusCode, 204);
    });

    it('two replicas on one database send every mail exactly once', async (t) => {
      const box = await startMailbox();
      t.after(() => box.close());
      const testDb = await createTestDatabase(dialect);
      t.after(() => testDb.drop());
      const a = await startTestApp({ dialect, env: box.env(), testDb });
      t.after(() => a.close());
      const b = await startTestApp({ dialect, env: box.env(), testDb, migrate: false });
      t.after(() => b.close());
      const count = 30;
      // All due at once, in one transaction: both replicas' senders see the same rows and race for them.
      await a.database.db.transaction().execute(async (trx) => {
        for (let i = 0; i < count; i++)
          await MailOutbox.enqueue(trx, {
            kind: 'invitation',
            to: `replica-${i}@example.com`,
            subject: `mail ${i}`,
            text: `body ${i}`,
            html: `<p>body ${i}</p>`,
          });
      });
      await until(
        async () => (await outboxRows(a)).filter((r) => r.status === 'sent').length === count,
        'every mail sent',
        60_000,
      );
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(box.received.length, count);
      assert.equal(new Set(box.received.map((m) => m.to)).size, count, 'no address got two');
      assert.equal(new Set(box.received.map((m) => m.parsed.messageId)).size, count);
    });

    it('doctor checks the SMTP connection: STARTTLS and login work, a wrong password or a dead port is an error', async () => {
      const findings = async (env: Record<string, string>) =>
        (
          await runDoctor(
            loadConfig(
              { SECRET_KEY: TEST_SECRET, DATABASE_URL: 'sqlite::memory:', ...mailbox.env(), ...env },
              { dotenvDir: null },
            ),
            {},
            { envFile: null, timeoutMs: 5_000 },
          )
        ).filter((f) => f.id.startsWith('smtp.'));
      assert.deepEqual(await findings({}), []);
      const [wrong] = await findings({ SMTP_PASSWORD: 'not-the-password' });
      assert.equal(wrong?.id, 'smtp.unreachable');
      assert.equal(wrong?.severity, 'error');
      assert.ok(!wrong?.message.includes('not-the-password'), 'the password is not printed');
      const [dead] = await findings({ SMTP_PORT: String(await freePort()) });
      assert.equal(dead?.id, 'smtp.unreachable');
      assert.match(dead!.message, /ECONNREFUSED|connect/i);
    });
  });
}

describe('mail without SMTP', () => {
  it('says so: 503 mail_not_configured, and the options endpoint tells the console to hide it', async (t) => {
    const app = await startTestApp();
    t.after(() => app.close());
    const admin = await createUser(app, 'admin-nomail@example.com', 'admin');
    assertError(
      await app.inject({ method: 'POST', url: '/api/auth/password-reset', payload: { email: admin.email } }),
      503,
      'mail_not_configured',
    );
    assertError(
      await app.inject({
        method: 'POST',
        url: '/api/invitations',
        headers: bearer(admin.accessToken),
        payload: { email: 'x@example.com' },
      }),
      503,
      'mail_not_configured',
    );
    assertError(
      await app.inject({
        method: 'POST',
        url: '/api/auth/verify-email/resend',
        payload: { email: admin.email },
      }),
      503,
      'mail_not_configured',
    );
    const options = (await app.inject({ url: '/api/auth/options' })).json();
    assert.equal(options.mail, false);
    assert.equal(options.password_reset, false);
    assert.equal(options.invitations, false);
    // Not an error of the server: nothing logged as one.
    assert.ok(!app.logLines().some((l) => l.level === 50 && String(l.msg).includes('request failed')));
  });

  it('refuses SMTP_TLS=none to a host that is not loopback, and mail settings without PUBLIC_URL', () => {
    const load = (env: Record<string, string>) =>
      loadConfig(
        { SECRET_KEY: TEST_SECRET, COLLOQUY_ADMIN_KEY: TEST_MASTER_KEY, ...env },
        { dotenvDir: null },
      );
    const base = {
      SMTP_HOST: 'smtp.example.com',
      SMTP_FROM: 'a@example.com',
      PUBLIC_URL: 'https://x.example',
    };
    assert.throws(
      () => load({ ...base, SMTP_TLS: 'none' }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => /^SMTP_TLS: none is only allowed/.test(p)),
    );
    assert.equal(load({ ...base, SMTP_HOST: '127.0.0.1', SMTP_TLS: 'none' }).mail?.port, 25);
    assert.equal(load({ ...base, SMTP_HOST: 'localhost', SMTP_TLS: 'none' }).mail?.tls, 'none');
    assert.equal(load(base).mail?.port, 587);
    assert.equal(load({ ...base, SMTP_TLS: 'tls' }).mail?.port, 465);
    assert.throws(
      () => load({ SMTP_HOST: 'smtp.example.com', SMTP_FROM: 'a@example.com' }),
      (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('PUBLIC_URL:')),
    );
    assert.throws(
      () => load({ REQUIRE_EMAIL_VERIFICATION: 'true' }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => p.startsWith('REQUIRE_EMAIL_VERIFICATION:')),
    );
  });
});
