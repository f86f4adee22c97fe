// The signed-out pages of the mail flows (issue 24): "Forgot password?" (ask for a link), and the pages the
// mailed links open (/console/reset-password, /console/verify-email, /console/accept-invitation), which read
// `token` from the URL.
import { type FormEvent, type ReactNode, useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type User } from '../api/client';

export const MAIL_PAGES = ['reset-password', 'verify-email', 'accept-invitation'] as const;
export type MailPage = (typeof MAIL_PAGES)[number];

/** The mail page this URL is, if any (/console/<page>?token=…). */
export const mailPageFromUrl = (): MailPage | null => {
  const page = location.pathname.replace(/^\/console\/?/, '').replace(/\/$/, '');
  return (MAIL_PAGES as readonly string[]).includes(page) ? (page as MailPage) : null;
};
const tokenFromUrl = () => new URLSearchParams(location.search).get('token');
const SIGN_IN = '/console/';

function Card({ title, children }: { title: string; children: ReactNode }) {
  return (
    <main className="signin">
      <section className="card" aria-labelledby="card-title">
        <h1 id="card-title">{title}</h1>
        {children}
      </section>
    </main>
  );
}

function useSubmit(action: (form: FormData) => Promise<void>) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError('');
    try {
      await action(form);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const alert = error ? (
    <p className="error" role="alert">
      {error}
    </p>
  ) : null;
  return { submit, busy, alert };
}

function RequestReset() {
  const [sent, setSent] = useState(false);
  const { submit, busy, alert } = useSubmit(async (form) => {
    await api.requestPasswordReset({ email: String(form.get('email')) });
    setSent(true);
  });
  if (sent)
    return (
      <Card title="Check your mail">
        <p role="status">
          If this address has an account, a link to choose a new password is on its way. It works once, for 30
          minutes.
        </p>
        <a href={SIGN_IN}>Back to sign in</a>
      </Card>
    );
  return (
    <Card title="Forgot your password?">
      <form onSubmit={submit}>
        <p>Enter your account’s email address: we will mail you a link to choose a new password.</p>
        <label>
          Email
          <input name="email" type="email" autoComplete="username" required />
        </label>
        {alert}
        <button type="submit" disabled={busy}>
          {busy ? 'Sending…' : 'Send the link'}
        </button>
        <a href={SIGN_IN}>Back to sign in</a>
      </form>
    </Card>
  );
}

function ConfirmReset({ token }: { token: string }) {
  const [done, setDone] = useState(false);
  const { submit, busy, alert } = useSubmit(async (form) => {
    const password = String(form.get('password'));
    if (password !== String(form.get('confirm'))) throw new Error('the two passwords differ');
    await api.confirmPasswordReset({ token, password });
    setDone(true);
  });
  if (done)
    return (
      <Card title="Password changed">
        <p role="status">Your password was changed and your other sessions were signed out.</p>
        <a href={SIGN_IN}>Sign in</a>
      </Card>
    );
  return (
    <Card title="Choose a new password">
      <form onSubmit={submit}>
        <label>
          New password
          <input name="password" type="password" autoComplete="new-password" minLength={10} required />
        </label>
        <label>
          Repeat it
          <input name="confirm" type="password" autoComplete="new-password" minLength={10} required />
        </label>
        {alert}
        <button type="submit" disabled={busy}>
          {busy ? 'Saving…' : 'Set the password'}
        </button>
      </form>
    </Card>
  );
}

function VerifyEmail({ token }: { token: string }) {
  const [state, setState] = useState<{ user?: User; error?: string }>({});
  useEffect(() => {
    api.verifyEmail({ token }).then(
      (user) => setState({ user }),
      (err: unknown) => setState({ error: errorText(err) }),
    );
  }, [token]);
  if (state.user)
    return (
      <Card title="Address confirmed">
        <p role="status">{state.user.email} is confirmed: you can sign in now.</p>
        <a href={SIGN_IN}>Sign in</a>
      </Card>
    );
  return (
    <Card title="Confirming your address…">
      {state.error && (
        <p className="error" role="alert">
          {state.error}
        </p>
      )}
    </Card>
  );
}

function AcceptInvitation({ token, onSignedIn }: { token: string; onSignedIn: (u: User) => void }) {
  const { submit, busy, alert } = useSubmit(async (form) => {
    const name = String(form.get('display_name') ?? '').trim();
    const user = await api.acceptInvitation({
      token,
      password: String(form.get('password')),
      ...(name ? { display_name: name } : {}),
    });
    history.replaceState(null, '', SIGN_IN);
    onSignedIn(user);
  });
  return (
    <Card title="Accept your invitation">
      <form onSubmit={submit}>
        <label>
          Your name
          <input name="display_name" autoComplete="name" maxLength={200} />
        </label>
        <label>
          Choose a password
          <input name="password" type="password" autoComplete="new-password" minLength={10} required />
        </label>
        {alert}
        <button type="submit" disabled={busy}>
          {busy ? 'Creating…' : 'Create my account'}
        </button>
      </form>
    </Card>
  );
}

export function MailLinkPage({ page, onSignedIn }: { page: MailPage; onSignedIn: (u: User) => void }) {
  const token = tokenFromUrl();
  if (page === 'reset-password') return token ? <ConfirmReset token={token} /> : <RequestReset />;
  if (!token)
    return (
      <Card title="This link is incomplete">
        <p className="error" role="alert">
          The link has no token: open it from the mail again, whole.
        </p>
        <a href={SIGN_IN}>Back to sign in</a>
      </Card>
    );
  return page === 'verify-email' ? (
    <VerifyEmail token={token} />
  ) : (
    <AcceptInvitation token={token} onSignedIn={onSignedIn} />
  );
}
