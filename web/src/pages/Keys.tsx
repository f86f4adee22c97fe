import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { type ApiKey, api, type User } from '../api/client';
import {
  AdminTable,
  FormDialog,
  OutcomeMessage,
  Select,
  submitted,
  useOutcome,
  useUserList,
} from './admin-form';
import { usd } from './Usage';

const EXPIRIES = [
  { value: '0', label: 'never' },
  { value: '7', label: 'in 7 days' },
  { value: '30', label: 'in 30 days' },
  { value: '90', label: 'in 90 days' },
  { value: '365', label: 'in a year' },
];

const keyState = (k: ApiKey) =>
  k.revoked_at ? 'revoked' : k.expires_at && Date.parse(k.expires_at) <= Date.now() ? 'expired' : 'active';

const RATE_UNITS: Record<string, string> = {
  requests_per_minute: 'requests/min',
  requests_per_hour: 'requests/hour',
  tokens_per_minute: 'tokens/min',
  concurrent_streams: 'streams at once',
};

/** The key's own budgets, as "$5/day, 100,000 tokens/month"; "none" when it has none. */
const budgetText = (k: ApiKey) =>
  k.budgets?.length
    ? k.budgets
        .map((b) =>
          [
            b.limit_usd === null ? null : usd(b.limit_usd),
            b.limit_tokens === null ? null : `${b.limit_tokens.toLocaleString('en-US')} tokens`,
          ]
            .filter(Boolean)
            .map((limit) => `${limit}/${b.period}`)
            .join(' + '),
        )
        .join(', ')
    : 'none';

/** The key's own rate-limit overrides; the rest take the user's or the server's defaults. */
const rateText = (k: ApiKey) => {
  const entries = Object.entries(k.rate_limits ?? {});
  if (entries.length === 0) return 'defaults';
  return entries
    .map(([name, v]) => `${v < 0 ? 'unlimited' : v.toLocaleString('en-US')} ${RATE_UNITS[name] ?? name}`)
    .join(', ');
};

/**
 * An admin sees every key (owner, prefix, expiry, last use, budget, rate limits, allowed models), creates
 * one for any user, restricts its models and revokes any. A plain user lists, creates and revokes their
 * own keys only: the server refuses them other users' keys, model restrictions and limits (admin-only), so
 * those controls are not shown; the limits set on their keys are shown read-only.
 */
export function KeysPage({ self }: { self: User }) {
  const isAdmin = self.role === 'admin';
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const { users } = useUserList(isAdmin);
  const [created, setCreated] = useState<{ key: string; owner: string } | null>(null);
  const [copied, setCopied] = useState(false);
  const [models, setModels] = useState<string[]>([]);
  const [editing, setEditing] = useState<ApiKey | null>(null);
  // Errors only: a created key shows in its own notice, a revoked one in the table.
  const { outcome, fail, run } = useOutcome();
  const load = useCallback(() => api.keys(isAdmin).then((k) => setKeys(k.data), fail), [fail, isAdmin]);
  useEffect(() => {
    void load();
    api.models().then(
      (m) => setModels(m.data.map((x) => x.id)),
      () => {},
    );
  }, [load]);

  const emailOf = (id: string) => users.find((u) => u.id === id)?.email ?? (id === self.id ? self.email : id);
  const ownerOf = (k: ApiKey) => k.owner_email ?? emailOf(k.user_id);

  const create = async (e: FormEvent<HTMLFormElement>) => {
    const { form, text } = submitted(e);
    const name = text('name');
    const owner = text('owner') || self.id;
    const days = Number(text('expires'));
    // One name per owner among usable keys: two keys both called "ci" cannot be told apart when revoking.
    if (keys?.some((k) => k.user_id === owner && k.name === name && keyState(k) === 'active')) {
      const who = owner === self.id ? 'You already have' : `${emailOf(owner)} already has`;
      fail(`${who} an active key named “${name}”. Choose another name.`);
      return;
    }
    const ok = await run(async () => {
      const key = await api.createKey({
        name,
        ...(owner !== self.id ? { user_id: owner } : {}),
        ...(days ? { expires_in_days: days } : {}),
      });
      setCreated({ key: key.key, owner: emailOf(owner) });
      setCopied(false);
    }, null);
    if (!ok) return;
    form.reset();
    await load();
  };

  const revoke = async (k: ApiKey) => {
    if (
      !confirm(
        `Revoke ${k.user_id === self.id ? 'your key' : 'the key'} “${k.name}” (${k.prefix}…)${
          k.user_id === self.id ? '' : ` of ${ownerOf(k)}`
        }? Clients using it stop working.`,
      )
    )
      return;
    await run(() => api.revokeKey(k.id), null);
    await load();
  };

  const saveModels = async (e: FormEvent<HTMLFormElement>) => {
    const { form } = submitted(e);
    const key = editing;
    if (!key) return true;
    const ticked = new FormData(form).getAll('model').map(String);
    const allowed = ticked.length ? ticked : null;
    const saved = await run(
      () => api.updateKey(key.id, { allowed_models: allowed }),
      `${key.name} (${key.prefix}…) may now use ${allowed ? allowed.join(', ') : 'every model'}.`,
    );
    await load();
    return saved;
  };

  return (
    <section className="page">
      <h1>API keys</h1>
      <form className="row" onSubmit={create} aria-label="Create key">
        <label>
          Key name
          <input name="name" required maxLength={100} />
        </label>
        {isAdmin && (
          <Select
            label="Owner"
            name="owner"
            defaultValue={self.id}
            options={(users.length ? users : [self]).map((u) => ({ value: u.id, label: u.email }))}
          />
        )}
        <Select label="Expires" name="expires" defaultValue="0" options={EXPIRIES} />
        <button type="submit">Create key</button>
      </form>
      {created && (
        <div className="notice" role="status">
          <p>
            Copy this key{created.owner === self.email ? '' : ` for ${created.owner}`} now — it is shown only
            once:
          </p>
          <code data-testid="new-key">{created.key}</code>
          <button
            type="button"
            onClick={async () => {
              await navigator.clipboard.writeText(created.key).then(
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
      <OutcomeMessage outcome={outcome} />
      <AdminTable
        columns={[
          'Name',
          ...(isAdmin ? ['Owner'] : []),
          'Prefix',
          'Expires',
          'Last used',
          'Budget',
          'Rate limits',
          'Models',
          'Status',
        ]}
        actions
        rows={keys}
        loading="Loading keys…"
        empty="No keys yet."
      >
        {keys?.map((k) => (
          <tr key={k.id} data-testid="key-row">
            <th scope="row">{k.name}</th>
            {isAdmin && <td data-label="Owner">{ownerOf(k)}</td>}
            <td data-label="Prefix">
              <code>{k.prefix}…</code>
            </td>
            <td data-label="Expires">{k.expires_at ? fmt(k.expires_at) : 'never'}</td>
            <td data-label="Last used">{k.last_used_at ? fmt(k.last_used_at) : 'never'}</td>
            <td data-label="Budget">{budgetText(k)}</td>
            <td data-label="Rate limits">{rateText(k)}</td>
            <td data-label="Models">{k.allowed_models ? k.allowed_models.join(', ') : 'every model'}</td>
            <td data-label="Status">{keyState(k)}</td>
            <td className="actions">
              {isAdmin && (
                <a href={`#/limits/key/${encodeURIComponent(k.id)}`}>
                  Limits<span className="sr-only"> of {k.name}</span>
                </a>
              )}
              {isAdmin && keyState(k) === 'active' && (
                <button type="button" onClick={() => setEditing(k)}>
                  Models<span className="sr-only"> of {k.name}</span>
                </button>
              )}
              {keyState(k) === 'active' && (
                <button type="button" onClick={() => revoke(k)} aria-label={`Revoke ${k.name}`}>
                  Revoke
                </button>
              )}
            </td>
          </tr>
        ))}
      </AdminTable>
      {editing && (
        <FormDialog
          title={`Models of ${editing.name} (${editing.prefix}…)`}
          submit="Save models"
          onSubmit={saveModels}
          onClose={() => setEditing(null)}
        >
          <fieldset>
            <legend>Allowed models (none ticked: every model)</legend>
            {[...new Set([...models, ...(editing.allowed_models ?? [])])].map((m) => (
              <label key={m} className="inline">
                <input
                  type="checkbox"
                  name="model"
                  value={m}
                  defaultChecked={editing.allowed_models?.includes(m) ?? false}
                />
                {m}
              </label>
            ))}
          </fieldset>
        </FormDialog>
      )}
    </section>
  );
}

export const fmt = (iso: string) => new Date(iso).toLocaleString();
