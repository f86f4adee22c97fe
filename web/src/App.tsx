import { useEffect, useState } from 'react';
import { ApiError, api, type User } from './api/client';
import { AssistantsPage } from './pages/Assistants';
import { ChatPage } from './pages/Chat';
import { KeysPage } from './pages/Keys';
import { ProvidersPage } from './pages/Providers';
import { SignIn } from './pages/SignIn';
import { UsagePage } from './pages/Usage';
import { UsersPage } from './pages/Users';

const PAGES = [
  { id: 'chat', label: 'Chat', admin: false },
  { id: 'usage', label: 'Usage', admin: false },
  { id: 'keys', label: 'API keys', admin: true },
  { id: 'users', label: 'Users', admin: true },
  { id: 'assistants', label: 'Assistants', admin: true },
  { id: 'providers', label: 'Providers', admin: true },
] as const;
type PageId = (typeof PAGES)[number]['id'];

const pageFromHash = (): PageId => {
  const id = location.hash.replace(/^#\/?/, '');
  return (PAGES.find((p) => p.id === id)?.id ?? 'chat') as PageId;
};

export function App() {
  const [user, setUser] = useState<User | null>(null);
  const [booting, setBooting] = useState(true);
  const [page, setPage] = useState<PageId>(pageFromHash);

  useEffect(() => {
    const onHash = () => setPage(pageFromHash());
    window.addEventListener('hashchange', onHash);
    api.onSignedOut = () => setUser(null);
    // A reload keeps the session: the refresh token in sessionStorage buys a new access token.
    (async () => {
      if (api.hasSession && (await api.refresh())) setUser(await api.me().catch(() => null));
      setBooting(false);
    })();
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  if (booting) return <p className="center">Loading…</p>;
  if (!user) return <SignIn onSignedIn={setUser} />;

  const isAdmin = user.role === 'admin';
  const current = PAGES.find((p) => p.id === page)!;
  return (
    <div className="shell">
      <header className="topbar">
        <strong className="brand">Colloquy</strong>
        <nav aria-label="Main">
          {PAGES.filter((p) => !p.admin || isAdmin).map((p) => (
            <a key={p.id} href={`#/${p.id}`} aria-current={p.id === page ? 'page' : undefined}>
              {p.label}
            </a>
          ))}
        </nav>
        <span className="who">
          {user.email} <span className="badge">{user.role}</span>
        </span>
        <button
          type="button"
          onClick={async () => {
            await api.logout();
            setUser(null);
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main">
        {current.admin && !isAdmin ? (
          <section className="refused" role="alert">
            <h1>Administrators only</h1>
            <p>
              The {current.label} page is for administrators. Your account ({user.email}) is a plain user; ask
              an administrator if you need access.
            </p>
          </section>
        ) : page === 'chat' ? (
          <ChatPage />
        ) : page === 'usage' ? (
          <UsagePage isAdmin={isAdmin} />
        ) : page === 'keys' ? (
          <KeysPage />
        ) : page === 'users' ? (
          <UsersPage self={user} />
        ) : page === 'providers' ? (
          <ProvidersPage />
        ) : (
          <AssistantsPage />
        )}
      </main>
    </div>
  );
}

export const errorText = (err: unknown) =>
  err instanceof ApiError
    ? `${err.message} (${err.status})`
    : err instanceof Error
      ? err.message
      : String(err);
