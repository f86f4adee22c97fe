import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type Res } from '../api/client';
import { useUserList } from './admin-form';
import { fmt } from './Keys';

type AuditEvent = Res<'/api/admin/audit', 'get'>['data'][number];
const PAGE = 50;

/** Actions the filter offers; any other is typed in (the server records `METHOD /route` for admin writes). */
const COMMON_ACTIONS = [
  'auth.login',
  'auth.logout',
  'auth.refresh',
  'POST /api/keys',
  'DELETE /api/keys/:id',
  'POST /api/users',
  'PATCH /api/users/:id',
  'PUT /api/budgets/:scope/:subject_id',
  'PUT /api/limits/:scope/:subject_id',
  'POST /api/admin/cache/invalidate',
];

/** The audit trail, newest first, filtered by action and by who acted; older pages on demand (admin). */
export function AuditPage() {
  const { users } = useUserList(true);
  const [filter, setFilter] = useState({ action: '', actor: '' });
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState('');

  const fetchPage = useCallback(
    async (before?: string) => {
      const page = await api.audit({
        limit: PAGE,
        before,
        action: filter.action || undefined,
        actor_user_id: filter.actor || undefined,
      });
      setMore(page.data.length === PAGE);
      return page.data;
    },
    [filter],
  );

  useEffect(() => {
    let stale = false;
    setEvents(null);
    fetchPage().then(
      (data) => {
        if (stale) return;
        setEvents(data);
        setError('');
      },
      (err) => !stale && setError(errorText(err)),
    );
    return () => {
      stale = true;
    };
  }, [fetchPage]);

  const older = async () => {
    try {
      const data = await fetchPage(events?.at(-1)?.id);
      setEvents((e) => [...(e ?? []), ...data]);
    } catch (err) {
      setError(errorText(err));
    }
  };

  const apply = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    setFilter({ action: String(f.get('action')).trim(), actor: String(f.get('actor')) });
  };

  const who = (e: AuditEvent) =>
    e.actor_user_id
      ? (e.actor_email ?? e.actor_user_id)
      : e.actor_key_id
        ? `key ${e.actor_key_id}`
        : (e.actor_via ?? '—');

  return (
    <section className="page">
      <h1>Audit log</h1>
      <form className="row" onSubmit={apply} aria-label="Filter the audit log">
        <label>
          Action
          <input name="action" list="audit-actions" defaultValue={filter.action} maxLength={200} />
          <datalist id="audit-actions">
            {COMMON_ACTIONS.map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <label>
          By
          <select name="actor" defaultValue={filter.actor}>
            <option value="">anyone</option>
            {users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.email}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="scroll">
        <table className="cards" data-testid="audit">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Outcome</th>
              <th scope="col">By</th>
              <th scope="col">Target</th>
              <th scope="col">From</th>
            </tr>
          </thead>
          <tbody>
            {events?.map((e) => (
              <tr key={e.id} data-testid="audit-row">
                <th scope="row">{fmt(e.created_at)}</th>
                <td data-label="Action">
                  <code>{e.action}</code>
                </td>
                <td data-label="Outcome">
                  {e.outcome} ({e.status_code})
                </td>
                <td data-label="By">{who(e)}</td>
                <td data-label="Target">{e.subject ?? e.target_id ?? '—'}</td>
                <td data-label="From">{e.ip ?? '—'}</td>
              </tr>
            ))}
            {events === null && !error && (
              <tr>
                <td colSpan={6}>Loading the audit log…</td>
              </tr>
            )}
            {events?.length === 0 && (
              <tr>
                <td colSpan={6}>No events match.</td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {more && (
        <button type="button" onClick={older}>
          Older events
        </button>
      )}
    </section>
  );
}
