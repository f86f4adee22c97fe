import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { type ApiKey, api, type Res, type Scope, type User } from '../api/client';
import { AdminTable, OutcomeMessage, Select, submitted, useOutcome } from './admin-form';
import { fmt } from './Keys';
import { decimal, usd } from './Usage';

type Budget = Res<'/api/budgets/{scope}/{subject_id}', 'get'>['data'][number];
type Override = Res<'/api/limits/{scope}/{subject_id}', 'get'>['data'][number];
type LimitName = Override['limit'];

export const LIMITS: { value: LimitName; label: string }[] = [
  { value: 'requests_per_minute', label: 'Requests per minute' },
  { value: 'requests_per_hour', label: 'Requests per hour' },
  { value: 'tokens_per_minute', label: 'Tokens per minute' },
  { value: 'concurrent_streams', label: 'Concurrent streams' },
];
export const limitLabel = (id: string) => LIMITS.find((l) => l.value === id)?.label ?? id;

/** #/limits/<scope>/<id>: the subject chosen (links from the Users and API keys pages land here). */
function subjectOf(hash: string): { scope: Scope; id: string } {
  const [, scope, id] = hash.replace(/^#\/?/, '').split('/');
  return { scope: scope === 'key' ? 'key' : 'user', id: id ? decodeURIComponent(id) : '' };
}

/** Budgets (USD and tokens per day or month) and rate-limit overrides of one user or API key (admin). */
export function LimitsPage({ route }: { route: string }) {
  const { scope, id } = subjectOf(route);
  const [users, setUsers] = useState<User[]>([]);
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [budgets, setBudgets] = useState<Budget[] | null>(null);
  const [overrides, setOverrides] = useState<Override[] | null>(null);
  const { outcome, setOutcome, fail, run } = useOutcome();
  // The subject could not be read (deleted, or a bad link): its error instead of tables that never load.
  const [failed, setFailed] = useState(false);

  useEffect(() => {
    api.users().then(
      (u) => setUsers(u.data),
      () => {},
    );
    api.keys(true).then(
      (k) => setKeys(k.data),
      () => {},
    );
  }, []);

  const load = useCallback(async () => {
    if (!id) return;
    setBudgets(null);
    setOverrides(null);
    try {
      const [b, o] = await Promise.all([api.budgets(scope, id), api.limits(scope, id)]);
      setBudgets(b.data);
      setOverrides(o.data);
      setFailed(false);
    } catch (err) {
      setFailed(true);
      fail(err);
    }
  }, [scope, id, fail]);
  useEffect(() => {
    setOutcome(null);
    void load();
  }, [load, setOutcome]);

  const choose = (next: Scope, nextId: string) => {
    location.hash = `#/limits/${next}${nextId ? `/${encodeURIComponent(nextId)}` : ''}`;
  };
  const subjectName =
    scope === 'user'
      ? (users.find((u) => u.id === id)?.email ?? id)
      : (() => {
          const k = keys.find((x) => x.id === id);
          return k ? `${k.name} (${k.prefix}…)` : id;
        })();

  const act = async (what: () => Promise<unknown>, done: string) => {
    await run(what, done);
    await load();
  };

  const saveBudget = (e: FormEvent<HTMLFormElement>) => {
    const { text } = submitted(e);
    const period = text('period') === 'month' ? 'month' : 'day';
    const usdText = text('limit_usd');
    const tokensText = text('limit_tokens');
    if (!usdText && !tokensText) {
      fail('Give a USD limit, a token limit, or both.');
      return;
    }
    void act(
      () =>
        api.setBudget(scope, id, {
          period,
          limit_usd: usdText ? Number(usdText) : null,
          limit_tokens: tokensText ? Number(tokensText) : null,
        }),
      `The ${period === 'day' ? 'daily' : 'monthly'} budget of ${subjectName} is saved.`,
    );
  };

  const saveLimit = (e: FormEvent<HTMLFormElement>) => {
    const { text } = submitted(e);
    const limit = text('limit') as LimitName;
    const value = Number(text('value'));
    void act(
      () => api.setLimit(scope, id, { limit, value }),
      `${limitLabel(limit)} of ${subjectName}: ${value < 0 ? 'unlimited' : value}.`,
    );
  };

  return (
    <section className="page">
      <h1>Budgets &amp; limits</h1>
      <form className="row" aria-label="Subject" onSubmit={(e) => e.preventDefault()}>
        <Select
          label="For"
          ariaLabel="For"
          value={scope}
          onChange={(v) => choose(v === 'key' ? 'key' : 'user', '')}
          options={[
            { value: 'user', label: 'a user' },
            { value: 'key', label: 'an API key' },
          ]}
        />
        <Select
          label={scope === 'user' ? 'User' : 'API key'}
          ariaLabel={scope === 'user' ? 'User' : 'API key'}
          value={id}
          onChange={(v) => choose(scope, v)}
          blank="Choose…"
          options={
            scope === 'user'
              ? users.map((u) => ({ value: u.id, label: u.email }))
              : keys
                  .filter((k) => !k.revoked_at)
                  .map((k) => ({ value: k.id, label: `${k.name} (${k.prefix}…)` }))
          }
        />
      </form>
      <OutcomeMessage outcome={outcome} />
      {!id && (
        <p className="muted">Choose a user or an API key to see and set its budgets and rate limits.</p>
      )}
      {id && !failed && (
        <>
          <h2>Budgets</h2>
          <AdminTable
            columns={['Period', 'USD limit', 'Spent', 'Token limit', 'Tokens used', 'Resets']}
            actions
            testId="budgets"
            rows={budgets}
            loading="Loading budgets…"
            empty="No budget: spending is not capped."
          >
            {budgets?.map((b) => (
              <tr key={b.period}>
                <th scope="row">{b.period === 'day' ? 'Daily' : 'Monthly'}</th>
                <td data-label="USD limit">{b.limit_usd === null ? 'none' : usd(b.limit_usd)}</td>
                <td data-label="Spent">
                  {usd(b.spent_usd)}
                  {b.reserved_usd > 0 && ` (+${usd(b.reserved_usd)} in progress)`}
                </td>
                <td data-label="Token limit">
                  {b.limit_tokens === null ? 'none' : b.limit_tokens.toLocaleString('en-US')}
                </td>
                <td data-label="Tokens used">{b.spent_tokens.toLocaleString('en-US')}</td>
                <td data-label="Resets">{fmt(b.window.end)}</td>
                <td className="actions">
                  <button
                    type="button"
                    onClick={() =>
                      confirm(
                        `Remove the ${b.period === 'day' ? 'daily' : 'monthly'} budget of ${subjectName}?`,
                      ) && act(() => api.removeBudget(scope, id, b.period), 'Budget removed.')
                    }
                  >
                    Remove<span className="sr-only"> the {b.period} budget</span>
                  </button>
                </td>
              </tr>
            ))}
          </AdminTable>
          <form className="row" onSubmit={saveBudget} aria-label="Set a budget">
            <Select
              label="Period"
              name="period"
              defaultValue="day"
              options={[
                { value: 'day', label: 'per day' },
                { value: 'month', label: 'per month' },
              ]}
            />
            <label>
              USD limit
              <input name="limit_usd" type="number" min={0} step="any" inputMode="decimal" />
            </label>
            <label>
              Token limit
              <input name="limit_tokens" type="number" min={0} step={1} inputMode="numeric" />
            </label>
            <button type="submit">Save budget</button>
          </form>

          <h2>Rate limits</h2>
          <p className="muted">
            Limits not listed take the server’s defaults. A negative value means unlimited.
          </p>
          <AdminTable
            columns={['Limit', 'Value']}
            actions
            testId="overrides"
            rows={overrides}
            loading="Loading rate limits…"
            empty="No overrides: the defaults apply."
          >
            {overrides?.map((o) => (
              <tr key={o.limit}>
                <th scope="row">{limitLabel(o.limit)}</th>
                <td data-label="Value">{o.value < 0 ? 'unlimited' : decimal(o.value)}</td>
                <td className="actions">
                  <button
                    type="button"
                    onClick={() =>
                      act(() => api.removeLimit(scope, id, o.limit), `${limitLabel(o.limit)}: default again.`)
                    }
                  >
                    Reset<span className="sr-only"> {limitLabel(o.limit)}</span>
                  </button>
                </td>
              </tr>
            ))}
          </AdminTable>
          <form className="row" onSubmit={saveLimit} aria-label="Override a rate limit">
            <Select label="Limit" name="limit" defaultValue="requests_per_minute" options={LIMITS} />
            <label>
              Value
              <input name="value" type="number" step={1} required inputMode="numeric" />
            </label>
            <button type="submit">Save limit</button>
          </form>
        </>
      )}
    </section>
  );
}
