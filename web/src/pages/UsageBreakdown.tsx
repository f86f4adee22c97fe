import { useEffect, useState } from 'react';
import { errorText } from '../App';
import { api, type UsageRow } from '../api/client';
import { csvLine } from '../csv';
import { decimal, filterQuery, type UsageFilters } from './Usage';

type Dimension = 'model' | 'api_key' | 'user' | 'protocol';

const DIMENSIONS: { id: Dimension; label: string; column: string; adminOnly: boolean }[] = [
  { id: 'model', label: 'Model', column: 'Model', adminOnly: false },
  { id: 'api_key', label: 'API key', column: 'API key', adminOnly: false },
  { id: 'user', label: 'User', column: 'User', adminOnly: true },
  // The client protocol: chat_completions, messages (Anthropic), conversations… (issue 20).
  { id: 'protocol', label: 'API', column: 'Client API', adminOnly: false },
];

/** What a row is called: the model, the key's name and prefix, the user's email — never a bare id. */
export function rowName(dimension: Dimension, row: UsageRow): string {
  if (dimension === 'model') return row.key ?? '(unknown model)';
  if (dimension === 'protocol') return row.key ?? '(unknown)';
  if (row.key === null)
    return dimension === 'api_key' ? 'No key (console or master key)' : 'No user (master key)';
  return row.label ?? `${row.key} (deleted)`;
}

const TOTALS_COLUMNS =
  'requests,prompt_tokens,completion_tokens,cost_usd,cached_requests,errors,rate_limited,budget_exceeded';

/** CSV of usage rows: the caller's leading columns (what names the row), then every total. */
export function usageCsv(leadHead: string, rows: UsageRow[], lead: (row: UsageRow) => string[]) {
  const lines = rows.map((r) =>
    csvLine([
      ...lead(r),
      r.requests,
      r.prompt_tokens,
      r.completion_tokens,
      r.cost_usd,
      r.cached_requests,
      r.errors,
      r.rate_limited ?? 0,
      r.budget_exceeded ?? 0,
    ]),
  );
  return `${[`${leadHead},${TOTALS_COLUMNS}`, ...lines].join('\n')}\n`;
}

export const breakdownCsv = (dimension: Dimension, rows: UsageRow[]) =>
  usageCsv(`${dimension},id`, rows, (r) => [rowName(dimension, r), r.key ?? '']);

export function downloadCsv(text: string, filename: string) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Usage for the selected range by model, API key or user (admins), with each row's share of requests. */
export function Breakdown({
  isAdmin,
  from,
  to,
  refresh,
  filters,
}: {
  isAdmin: boolean;
  from: string;
  to: string;
  refresh: number;
  filters: UsageFilters;
}) {
  const [dimension, setDimension] = useState<Dimension>('model');
  const [rows, setRows] = useState<UsageRow[]>([]);
  const [error, setError] = useState('');
  const [loading, setLoading] = useState(true);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `refresh` is the reload trigger
  useEffect(() => {
    let stale = false;
    setLoading(true);
    api
      .usage({ from, to, group_by: dimension, ...filterQuery(filters) })
      .then(
        (u) => {
          if (stale) return;
          setRows(u.data);
          setError('');
        },
        (err) => !stale && setError(errorText(err)),
      )
      .finally(() => !stale && setLoading(false));
    return () => {
      stale = true;
    };
  }, [dimension, from, to, refresh, filters]);

  const current = DIMENSIONS.find((d) => d.id === dimension)!;
  const most = Math.max(1, ...rows.map((r) => r.requests));
  // Refusals come before a model or a protocol is known.
  const refusals = dimension !== 'model' && dimension !== 'protocol';

  return (
    <section aria-labelledby="breakdown-heading">
      <h2 id="breakdown-heading">Breakdown</h2>
      <div className="row">
        <fieldset className="segmented">
          <legend>Break usage down by</legend>
          {DIMENSIONS.filter((d) => !d.adminOnly || isAdmin).map((d) => (
            <label key={d.id}>
              <input
                type="radio"
                name="breakdown"
                value={d.id}
                checked={dimension === d.id}
                onChange={() => setDimension(d.id)}
              />
              {d.label}
            </label>
          ))}
        </fieldset>
        <button
          type="button"
          disabled={!rows.length}
          onClick={() =>
            downloadCsv(breakdownCsv(dimension, rows), `colloquy-usage-by-${dimension}-${from}-${to}.csv`)
          }
        >
          Export breakdown CSV
        </button>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region is reached by keyboard */}
      <section className="scroll" tabIndex={0} aria-label="Breakdown, scrollable">
        <table data-testid="usage-breakdown">
          <caption className="sr-only">
            Usage by {current.label.toLowerCase()} from {from} to {to}
          </caption>
          <thead>
            <tr>
              <th scope="col">{current.column}</th>
              <th scope="col">Requests</th>
              <th scope="col">Share</th>
              <th scope="col">Tokens</th>
              <th scope="col">Cost (USD)</th>
              <th scope="col">Cache hits</th>
              <th scope="col">Errors</th>
              {refusals && <th scope="col">Refused</th>}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.key ?? '(none)'}>
                <th scope="row">{rowName(dimension, r)}</th>
                <td>{r.requests}</td>
                <td>
                  <meter
                    min={0}
                    max={most}
                    value={r.requests}
                    aria-label={`share of requests: ${r.requests}`}
                  />
                </td>
                <td>{r.prompt_tokens + r.completion_tokens}</td>
                <td>{decimal(r.cost_usd)}</td>
                <td>{r.requests ? `${((100 * r.cached_requests) / r.requests).toFixed(0)}%` : '—'}</td>
                <td>{r.errors}</td>
                {refusals && <td>{(r.rate_limited ?? 0) + (r.budget_exceeded ?? 0)}</td>}
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={refusals ? 8 : 7}>{loading ? 'Loading usage…' : 'No usage in this range.'}</td>
              </tr>
            )}
          </tbody>
        </table>
      </section>
    </section>
  );
}
