// Invitations from the console (issue 24): an admin invites an address with a role on the Users page, the
// mail arrives at a real SMTP server in-process (test/helpers/smtp.ts, STARTTLS), its link opens the accept
// page in headless Chromium, the invitee sets a password and is signed in with the role given. Without SMTP
// the Users page offers no "Invite".
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { linkIn, type Mailbox, startMailbox } from '../helpers/smtp.js';
import {
  ADMIN,
  DESKTOP,
  type Harness,
  PLAIN,
  skipBrowser,
  startHarness,
  until,
  useHarness,
} from './harness.js';

const INVITEE = { email: 'invited-tutor@example.com', password: 'invited-password-789' };
/** Refused requests the tests provoke log a resource error in the page; everything else is a fault. */
const faults = (h: Harness) => h.consoleErrors.filter((e) => !/Failed to load resource/.test(e));

describe('console: invitations by mail, in a browser', { skip: skipBrowser }, () => {
  let mailbox: Mailbox;
  let h: Harness;

  before(async () => {
    mailbox = await startMailbox();
    // Links in the mail are built on PUBLIC_URL: here, the server the browser talks to.
    h = await startHarness((port) => ({ ...mailbox.env(), PUBLIC_URL: `http://127.0.0.1:${port}` }));
  });
  after(async () => {
    await h?.close();
    await mailbox?.close();
  });

  it('"Invite" mails a link; it opens the accept page, sets a password and signs the invitee in with the role', async () => {
    const page = await h.newPage(DESKTOP, 'invite-admin');
    await h.signIn(page, ADMIN, '#/users');
    const form = page.getByRole('form', { name: 'Invite user' });
    await form.getByLabel('Email to invite').fill(INVITEE.email);
    await form.getByLabel('Role of the invited user').selectOption('admin');
    await form.getByRole('button', { name: 'Invite' }).click();
    const status = await page.getByRole('status').textContent();
    assert.match(status ?? '', new RegExp(`Invitation mailed to ${INVITEE.email} \\(admin\\)`));

    // An address that already has an account: the server's 409, in words, on the page.
    await form.getByLabel('Email to invite').fill(PLAIN.email);
    await form.getByRole('button', { name: 'Invite' }).click();
    assert.match((await page.getByRole('alert').textContent()) ?? '', /already exists/);
    await h.shot(page, 'users-invite');

    const [mail] = await mailbox.waitFor(INVITEE.email);
    assert.equal(mail!.secure, true);
    const link = linkIn(mail!);
    assert.equal(link.origin, h.base);
    assert.equal(link.pathname, '/console/accept-invitation');

    // The invitee: a fresh browser, no session.
    const invitee = await h.newPage(DESKTOP, 'invitee');
    await invitee.goto(link.toString());
    await invitee.getByRole('heading', { name: 'Accept your invitation' }).waitFor();
    await invitee.getByLabel('Your name').fill('Invited Tutor');
    await invitee.getByLabel('Choose a password').fill(INVITEE.password);
    await invitee.getByRole('button', { name: 'Create my account' }).click();
    await invitee.getByRole('button', { name: 'Sign out' }).waitFor();
    const who = (await invitee.locator('.who').textContent()) ?? '';
    assert.match(who, new RegExp(INVITEE.email));
    assert.match(who, /admin/, 'the role given in the invitation');
    // The role is real: the admin-only Users page opens for the invitee.
    await invitee.goto(`${h.base}/console/#/users`);
    await invitee.getByRole('row', { name: new RegExp(INVITEE.email) }).waitFor();

    // The new password signs in; the admin's Users page lists the new account.
    const login = await fetch(`${h.base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(INVITEE),
    });
    assert.equal(login.status, 200);
    await page.reload();
    await page.getByRole('row', { name: new RegExp(INVITEE.email) }).waitFor();
    assert.deepEqual(faults(h), []);
  });
});

describe('console: no SMTP, no "Invite"', { skip: skipBrowser }, () => {
  const h = useHarness();

  it('the Users page has the create form but no invite form when mail is off', async () => {
    const page = await h.newPage(DESKTOP, 'no-smtp');
    await h.signIn(page, ADMIN, '#/users');
    await page.getByRole('row', { name: new RegExp(PLAIN.email) }).waitFor();
    await page.getByRole('form', { name: 'Create user' }).waitFor();
    const options = (await (await fetch(`${h.base}/api/auth/options`)).json()) as { invitations: boolean };
    assert.equal(options.invitations, false);
    // The Users page's own request for the options answered too (the sign-in page asked first).
    await until(
      async () =>
        ((await page.evaluate(
          'performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/auth/options")).length',
        )) as number) >= 2,
      'the Users page to ask for the options',
    );
    assert.equal(await page.getByRole('form', { name: 'Invite user' }).count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Invite' }).count(), 0);
    assert.deepEqual(faults(h), []);
  });
});
