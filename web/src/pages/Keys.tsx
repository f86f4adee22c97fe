import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { errorText } from '../App';
import { type ApiKey, api } from '../api/client';

export function KeysPage() {
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [created, setCreated] = useState<string | null>(null);
  const [copied, setCopied] = useState(false);
  const [error, setError] = useState('');
  const load = useCallback(
    () =>
      api.keys().then(
        (k) => setKeys(k.data),
        (e) => setError(errorText(e)),
      ),
    [],
  );
  useEffect(() => void load(), [load]);

  const create = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const form = e.currentTarget;
    const name = String(new FormData(form).get('name')).trim();
    try {
      const key = await api.createKey({ name });
      setCreated(key.key);
      setCopied(false);
      form.reset();
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const revoke = async (k: ApiKey) => {
    if (!confirm(`Revoke the key “${k.name}”? Clients using it stop working.`)) return;
    await api.revokeKey(k.id).catch((err) => setError(errorText(err)));
    await load();
  };

  return (
    <section className="page">
      <h1>API keys</h1>
      <form className="row" onSubmit={create}>
        <label>
          Key name
          <input name="name" required maxLength={100} />
        </label>
        <button type="submit">Create key</button>
      </form>
      {created && (
        <div className="notice" role="status">
          <p>Copy this key now — it is shown only once:</p>
          <code data-testid="new-key">{created}</code>
          <button
            type="button"
            onClick={async () => {
              await navigator.clipboard.writeText(created).then(
                () => setCopied(true),
                () => setCopied(false),
              );
            }}
          >
            {copied ? 'Copied' : 'Copy'}
          </button>
          <button type="button" onClick={() => setCreated(null)}>
            Done
          </button>
        </div>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Prefix</th>
            <th scope="col">Created</th>
            <th scope="col">Last used</th>
            <th scope="col">Status</th>
            <th scope="col">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k.id}>
              <th scope="row">{k.name}</th>
              <td>
                <code>{k.prefix}…</code>
              </td>
              <td>{fmt(k.created_at)}</td>
              <td>{k.last_used_at ? fmt(k.last_used_at) : 'never'}</td>
              <td>{k.revoked_at ? 'revoked' : 'active'}</td>
              <td>
                {!k.revoked_at && (
                  <button type="button" onClick={() => revoke(k)} aria-label={`Revoke ${k.name}`}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

export const fmt = (iso: string) => new Date(iso).toLocaleString();
