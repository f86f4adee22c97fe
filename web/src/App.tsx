import { useEffect, useState } from 'react';
import { ApiError, api, type User } from './api/client';
import { AssistantsPage } from './pages/Assistants';
import { AuditPage } from './pages/Audit';
import { ChatPage } from './pages/Chat';
import { GuardrailsPage } from './pages/Guardrails';
import { KeysPage } from './pages/Keys';
import { LimitsPage } from './pages/Limits';
import { MailLinkPage, mailPageFromUrl } from './pages/MailLinks';
import { ProvidersPage } from './pages/Providers';
import { SignIn } from './pages/SignIn';
import { UsagePage } from './pages/Usage';
import { UsersPage } from './pages/Users';

const PAGES = [
  { id: 'chat', label: 'Chat', admin: false },
  { id: 'usage', label: 'Usage', admin: false },
  // Plain users manage their own keys and private assistants there (the pages hide what is admin-only).
  { id: 'keys', label: 'API keys', admin: false },
  { id: 'users', label: 'Users', admin: true },
  { id: 'assistants', label: 'Assistants', admin: false },
  { id: 'providers', label: 'Providers', admin: true },
  { id: 'limits', label: 'Budgets & limits', admin: true },
  { id: 'guardrails', label: 'Guardrails', admin: true },
  { id: 'audit', label: 'Audit log', admin: true },
] as const;
type PageId = (typeof PAGES)[number]['id'];

const pageFromHash = (): PageId => {
  const id = location.hash.replace(/^#\/?/, '').split('/')[0];
  return (PAGES.find((p) => p.id === id)?.id ?? 'chat') as PageId;
};
/** The open conversation: #/chat/<id> (deep links, back/forward and reloads keep it). */
const conversationFromHash = (): string | null => {
  const [page, id] = location.hash.replace(/^#\/?/, '').split('/');
  return page === 'chat' && id ? decodeURIComponent(id) : null;
};

export function App() {
  const [user, setUser] = useState<User | null>(null);
  const [booting, setBooting] = useState(true);
  const [page, setPage] = useState<PageId>(pageFromHash);
  const [conversationId, setConversationId] = useState<string | null>(conversationFromHash);
  const [hash, setHash] = useState(location.hash);

  useEffect(() => {
    const onHash = () => {
      setPage(pageFromHash());
      setConversationId(conversationFromHash());
      setHash(location.hash);
    };
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
  // A page a mailed link opened (reset, verification, invitation) comes before the session.
  const mailPage = mailPageFromUrl();
  if (mailPage && !user) return <MailLinkPage page={mailPage} onSignedIn={setUser} />;
  if (!user) return <SignIn onSignedIn={setUser} />;

  const isAdmin = user.role === 'admin';
  const current = PAGES.find((p) => p.id === page)!;
  return (
    <div className={page === 'chat' ? 'shell fixed' : 'shell'}>
      <button type="button" className="skip" onClick={skipToMain}>
        Skip to content
      </button>
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
      <main id="main" tabIndex={-1}>
        {current.admin && !isAdmin ? (
          <section className="refused" role="alert">
            <h1>Administrators only</h1>
            <p>
              The {current.label} page is for administrators. Your account ({user.email}) is a plain user; ask
              an administrator if you need access.
            </p>
          </section>
        ) : page === 'chat' ? (
          <ChatPage routeId={conversationId} userId={user.id} />
        ) : page === 'usage' ? (
          <UsagePage isAdmin={isAdmin} />
        ) : page === 'keys' ? (
          <KeysPage self={user} />
        ) : page === 'limits' ? (
          <LimitsPage route={hash} />
        ) : page === 'guardrails' ? (
          <GuardrailsPage />
        ) : page === 'audit' ? (
          <AuditPage />
        ) : page === 'users' ? (
          <UsersPage self={user} />
        ) : page === 'providers' ? (
          <ProvidersPage />
        ) : (
          <AssistantsPage self={user} />
        )}
      </main>
    </div>
  );
}

/** Hash links are the router here (#main would open the chat): the skip link is a button moving focus. */
const skipToMain = () => document.getElementById('main')?.focus();

/** "15 minutes", "40 seconds": a wait as people say it. */
export const waitText = (seconds: number) => {
  if (seconds < 60) return `${Math.ceil(seconds)} second${Math.ceil(seconds) === 1 ? '' : 's'}`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.ceil(minutes / 60);
  return `${hours} hour${hours === 1 ? '' : 's'}`;
};

const sentence = (text: string) => {
  const t = text.trim();
  return t ? `${t[0]!.toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? '' : '.'}` : 'Something went wrong.';
};

/** An error as a sentence for people: no status numbers, waits in minutes, the known cases in plain words. */
export const errorText = (err: unknown) => {
  if (err instanceof ApiError) {
    const wait = err.retryAfter ? ` Try again in ${waitText(err.retryAfter)}.` : '';
    switch (err.code) {
      case 'invalid_credentials':
        return 'Wrong email or password.';
      case 'account_disabled':
        return 'This account is disabled. Ask an administrator to enable it again.';
      case 'too_many_login_attempts':
        return `Too many failed sign-ins.${wait || ' Try again later.'}`;
      case 'rate_limited':
        return `Too many requests for your rate limit.${wait}`;
      case 'budget_exceeded':
        return `Your spending budget is used up.${wait}`;
      case 'http_error':
        return err.status >= 500 ? 'The server failed to answer. Try again.' : sentence(err.message);
      default:
        return sentence(err.message);
    }
  }
  if (err instanceof TypeError) return 'The server cannot be reached. Check your connection and try again.';
  return sentence(err instanceof Error ? err.message : String(err));
};
