import { type FormEvent, useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type User } from '../api/client';

export function SignIn({ onSignedIn }: { onSignedIn: (u: User) => void }) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  // Without mail on the server there is no reset link to send: the link is hidden (GET /api/auth/options).
  const [canReset, setCanReset] = useState(false);
  useEffect(() => {
    api.authOptions().then(
      (o) => setCanReset(o.password_reset),
      () => setCanReset(false),
    );
  }, []);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError('');
    try {
      onSignedIn(await api.login(String(form.get('email')), String(form.get('password'))));
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Sign in to Colloquy</h1>
        <label>
          Email
          <input name="email" type="email" autoComplete="username" required />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {canReset && (
          <a className="small" href="/console/reset-password">
            Forgot password?
          </a>
        )}
      </form>
    </main>
  );
}
