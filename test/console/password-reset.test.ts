// The password-reset flow end to end (issue 24): a real `colloquy serve` (dist/main.js, SQLite) mailing
// through a real SMTP server in-process (STARTTLS, test/helpers/smtp.ts), driven in headless Chromium
// (Debian's /usr/bin/chromium, playwright-core): "Forgot password?", the mail, its link, a new password,
// signing in with it. And without SMTP the console does not offer the link.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { linkIn, type Mailbox, startMailbox } from '../helpers/smtp.js';
import { ADMIN, DESKTOP, type Harness, skipBrowser, startHarness } from './harness.js';

const USER = { email: 'forgetful@example.com', password: 'old-password-123' };
const NEW_PASSWORD = 'new-password-456';

/** A console server (the shared harness) with one plain user who will forget the password. */
async function startServer(env: Record<string, string> | ((port: number) => Record<string, string>)) {
  const h = await startHarness(env);
  const created = await h.api('POST', '/api/users', await h.login(ADMIN), USER);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return h;
}

/** Console errors other than refused requests (those this test provokes are asserted on the page). */
const unexpectedErrors = (h: Harness) => h.consoleErrors.filter((e) => !/Failed to load resource/.test(e));

describe('console: password reset by mail, in a browser', { skip: skipBrowser }, () => {
  let mailbox: Mailbox;

  before(async () => {
    mailbox = await startMailbox();
  });
  after(async () => {
    await mailbox?.close();
  });

  it('"Forgot password?" mails a link; it sets a new password once; the new one signs in', async (t) => {
    // Links in the mail are built on PUBLIC_URL: here, the server the browser talks to.
    const server = await startServer((port) => ({
      ...mailbox.env(),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
    }));
    t.after(() => server.close());
    const page = await server.newPage(DESKTOP);
    await page.goto(`${server.base}/console/`);
    await page.getByRole('link', { name: 'Forgot password?' }).click();
    await page.getByRole('heading', { name: 'Forgot your password?' }).waitFor();
    await page.getByLabel('Email').fill(USER.email);
    await page.getByRole('button', { name: 'Send the link' }).click();
    await page.getByRole('heading', { name: 'Check your mail' }).waitFor();

    const [mail] = await mailbox.waitFor(USER.email);
    assert.equal(mail!.secure, true);
    const link = linkIn(mail!);
    assert.equal(link.origin, server.base);
    assert.equal(link.pathname, '/console/reset-password');

    await page.goto(link.toString());
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByLabel('Repeat it', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Set the password' }).click();
    await page.getByRole('heading', { name: 'Password changed' }).waitFor();
    await page.getByRole('link', { name: 'Sign in' }).click();
    await page.getByLabel('Email').fill(USER.email);
    await page.getByLabel('Password').fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();

    // The old password no longer works; the link is used up and says so.
    const old = await fetch(`${server.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(USER),
    });
    assert.equal(old.status, 401);
    const again = await server.newPage(DESKTOP);
    await again.goto(link.toString());
    await again.getByLabel('New password', { exact: true }).fill('yet-another-password');
    await again.getByLabel('Repeat it', { exact: true }).fill('yet-another-password');
    await again.getByRole('button', { name: 'Set the password' }).click();
    const alert = await again.getByRole('alert').textContent();
    assert.match(alert ?? '', /already used|expired/);
    // The "password changed" notice followed.
    const mails = await mailbox.waitFor(USER.email, 2);
    assert.match(mails[1]!.subject, /password was changed/);
    assert.deepEqual(unexpectedErrors(server), []);
  });

  it('without SMTP the sign-in page offers no "Forgot password?"', async (t) => {
    const server = await startServer({});
    t.after(() => server.close());
    const page = await server.newPage(DESKTOP);
    // The page asks for the options on load: the check runs once they have arrived.
    const answered = page.waitForResponse((r) => r.url().endsWith('/api/auth/options'));
    await page.goto(`${server.base}/console/`);
    await answered;
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    const options = (await (await fetch(`${server.base}/api/auth/options`)).json()) as {
      password_reset: boolean;
    };
    assert.equal(options.password_reset, false);
    assert.equal(await page.getByRole('link', { name: 'Forgot password?' }).count(), 0);
    assert.deepEqual(unexpectedErrors(server), []);
  });
});
