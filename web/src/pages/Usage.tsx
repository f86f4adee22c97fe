import { useEffect, useMemo, useRef, useState } from 'react';
import uPlot from 'uplot';
import { errorText } from '../App';
import { type ApiKey, api, type UsageRow, type User } from '../api/client';
import { Select } from './admin-form';
import { GuardrailVerdicts } from './GuardrailVerdicts';
import { Breakdown, downloadCsv, usageCsv } from './UsageBreakdown';

const axis = (fg: string) => ({
  stroke: fg,
  grid: { stroke: 'rgba(128, 128, 128, 0.25)' },
  ticks: { stroke: 'rgba(128, 128, 128, 0.25)' },
});
/** A small number in full decimals: 0.000014, never 1.4e-5 (nor "0.0000" for a cost of a fraction of a cent). */
export const decimal = (v: number) => {
  if (v === 0 || Math.abs(v) >= 1) return v.toLocaleString('en-US', { maximumFractionDigits: 2 });
  const digits = Math.min(12, Math.max(2, 1 - Math.floor(Math.log10(Math.abs(v)))));
  return Number(v.toPrecision(2)).toFixed(digits).replace(/0+$/, '').replace(/\.$/, '');
};
export const usd = (v: number) => `$${decimal(v)}`;
export const plural = (n: number, one: string, many = `${one}s`) =>
  `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
// uPlot's default labels round to the tick step's decimals, so fractions of a cent all read "0".
const yValues = (_u: uPlot, splits: number[]) => splits.map(decimal);
/** The y axis as wide as its longest label: a cost like 0.000015 is not clipped to "000015". */
const ySize = (_u: uPlot, values: string[] | null) =>
  Math.max(40, 16 + 8 * Math.max(0, ...(values ?? []).map((v) => v.length)));
const day = (d: Date) => d.toISOString().slice(0, 10);
const daysAgo = (n: number) => day(new Date(Date.now() - n * 86_400_000));

/** One small time-series chart: x is the day (seconds), y the given series. */
function Chart({
  title,
  rows,
  series,
}: {
  title: string;
  rows: UsageRow[];
  series: { label: string; value: (r: UsageRow) => number }[];
}) {
  const el = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!el.current) return;
    const xs = rows.map((r) => Date.parse(`${r.key}T00:00:00Z`) / 1000);
    const data: uPlot.AlignedData = [xs, ...series.map((s) => rows.map(s.value))];
    const colors = ['#2f6fde', '#d9822b', '#2e9d5b'];
    // Canvas text does not follow CSS: take the page's text colour (light or dark scheme).
    const fg = getComputedStyle(el.current).color;
    const plot = new uPlot(
      {
        width: Math.max(260, el.current.clientWidth),
        height: 180,
        series: [
          {},
          ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2 })),
        ],
        axes: [axis(fg), { ...axis(fg), values: yValues, size: ySize }],
        scales: { x: { time: true } },
      },
      data,
      el.current,
    );
    return () => plot.destroy();
  }, [rows, series]);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={el} role="img" aria-label={`${title} per day`} />
    </figure>
  );
}

const SERIES = {
  requests: [
    { label: 'requests', value: (r: UsageRow) => r.requests },
    { label: 'errors', value: (r: UsageRow) => r.errors },
  ],
  tokens: [
    { label: 'prompt tokens', value: (r: UsageRow) => r.prompt_tokens },
    { label: 'completion tokens', value: (r: UsageRow) => r.completion_tokens },
  ],
  cost: [{ label: 'cost (USD)', value: (r: UsageRow) => r.cost_usd }],
  cacheHits: [
    {
      label: 'cache hit ratio (%)',
      value: (r: UsageRow) => (r.requests ? (100 * r.cached_requests) / r.requests : 0),
    },
  ],
  rejections: [
    { label: 'rate limited', value: (r: UsageRow) => r.rate_limited ?? 0 },
    { label: 'over budget', value: (r: UsageRow) => r.budget_exceeded ?? 0 },
  ],
  latency: [
    { label: 'p50 latency (ms)', value: (r: UsageRow) => r.p50_latency_ms ?? 0 },
    { label: 'p95 latency (ms)', value: (r: UsageRow) => r.p95_latency_ms ?? 0 },
    { label: 'p50 time to first token (ms)', value: (r: UsageRow) => r.p50_ttft_ms ?? 0 },
  ],
};

/** Every day from `from` to `to`, zero where nothing was recorded, so the charts show the whole range. */
export function fillDays(rows: UsageRow[], from: string, to: string): UsageRow[] {
  const byDay = new Map(rows.map((r) => [r.key, r]));
  const out: UsageRow[] = [];
  const end = Date.parse(`${to}T00:00:00Z`);
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= end && out.length < 3660; t += 86_400_000) {
    const key = day(new Date(t));
    out.push(
      byDay.get(key) ?? {
        key,
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cost_usd: 0,
        cached_requests: 0,
        errors: 0,
      },
    );
  }
  return out;
}

const PRESETS: { label: string; range: () => [string, string] }[] = [
  { label: 'Today', range: () => [daysAgo(0), daysAgo(0)] },
  { label: 'Last 7 days', range: () => [daysAgo(6), daysAgo(0)] },
  { label: 'Last 30 days', range: () => [daysAgo(29), daysAgo(0)] },
  { label: 'This month', range: () => [`${daysAgo(0).slice(0, 8)}01`, daysAgo(0)] },
];

export const toCsv = (rows: UsageRow[]) => usageCsv('day', rows, (r) => [r.key ?? '']);

/** Narrows every figure on the page to one user (admins), one API key and/or one model ('' for all). */
export interface UsageFilters {
  user_id: string;
  api_key_id: string;
  model: string;
}
const NO_FILTERS: UsageFilters = { user_id: '', api_key_id: '', model: '' };
/** The filters as the usage API's query: the empty ones left out. */
export const filterQuery = (f: UsageFilters) => ({
  user_id: f.user_id || undefined,
  api_key_id: f.api_key_id || undefined,
  model: f.model || undefined,
});

export function UsagePage({ isAdmin }: { isAdmin: boolean }) {
  const [from, setFrom] = useState(daysAgo(13));
  const [to, setTo] = useState(day(new Date()));
  const [filters, setFilters] = useState<UsageFilters>(NO_FILTERS);
  const [rows, setRows] = useState<UsageRow[]>([]);
  const [error, setError] = useState('');
  const [loaded, setLoaded] = useState(0);
  const [loading, setLoading] = useState(true);

  const badRange = from > to;

  // biome-ignore lint/correctness/useExhaustiveDependencies: `loaded` is the refresh trigger
  useEffect(() => {
    if (from > to) {
      setRows([]); // no old charts beside a range that cannot be shown
      setLoading(false);
      return;
    }
    setLoading(true);
    api
      .usage({ from, to, group_by: 'day', ...filterQuery(filters) })
      .then((u) => {
        setRows(u.data);
        setError('');
      })
      .catch((err) => setError(errorText(err)))
      .finally(() => setLoading(false));
  }, [from, to, loaded, filters]);

  const download = () => downloadCsv(toCsv(rows), `colloquy-usage-${from}-${to}.csv`);

  const days = useMemo(() => fillDays(rows, from, to), [rows, from, to]);
  const total = rows.reduce(
    (t, r) => ({
      requests: t.requests + r.requests,
      tokens: t.tokens + r.prompt_tokens + r.completion_tokens,
      cost: t.cost + r.cost_usd,
      cached: t.cached + r.cached_requests,
      refused: t.refused + (r.rate_limited ?? 0) + (r.budget_exceeded ?? 0),
    }),
    { requests: 0, tokens: 0, cost: 0, cached: 0, refused: 0 },
  );
  const hitRatio = total.requests ? (100 * total.cached) / total.requests : 0;

  return (
    <section className="page">
      <h1>Usage</h1>
      <p className="muted">{isAdmin ? 'Everyone’s usage (you are an administrator).' : 'Your own usage.'}</p>
      <form className="row" onSubmit={(e) => e.preventDefault()}>
        <label>
          From
          <input
            type="date"
            value={from}
            max={to}
            onChange={(e) => e.target.value && setFrom(e.target.value)}
          />
        </label>
        <label>
          To
          <input
            type="date"
            value={to}
            min={from}
            onChange={(e) => e.target.value && setTo(e.target.value)}
          />
        </label>
        <fieldset className="segmented" aria-label="Date presets">
          {PRESETS.map((p) => (
            <button
              key={p.label}
              type="button"
              onClick={() => {
                const [f, t] = p.range();
                setFrom(f);
                setTo(t);
              }}
            >
              {p.label}
            </button>
          ))}
        </fieldset>
        <UsageFilterFields isAdmin={isAdmin} from={from} to={to} filters={filters} onChange={setFilters} />
        <button type="button" onClick={() => setLoaded((n) => n + 1)}>
          Refresh
        </button>
        <button type="button" onClick={download} disabled={!rows.length}>
          Export CSV
        </button>
      </form>
      {badRange ? (
        <p className="error" role="alert">
          “From” must be on or before “To”.
        </p>
      ) : (
        error && (
          <p className="error" role="alert">
            {error}
          </p>
        )
      )}
      {!badRange && (
        <>
          <p className="totals" data-testid="usage-totals">
            <span>{plural(total.requests, 'request')}</span> · <span>{plural(total.tokens, 'token')}</span> ·{' '}
            <span data-testid="total-cost">{usd(total.cost)}</span> ·{' '}
            <span data-testid="cache-hit-ratio">{hitRatio.toFixed(1)}% cache hits</span> ·{' '}
            <span data-testid="limit-rejections">{total.refused} refused by limits</span>
          </p>
          <div className="charts">
            <Chart title="Requests" rows={days} series={SERIES.requests} />
            <Chart title="Tokens" rows={days} series={SERIES.tokens} />
            <Chart title="Cost" rows={days} series={SERIES.cost} />
            <Chart title="Latency" rows={days} series={SERIES.latency} />
            <Chart title="Cache hit ratio" rows={days} series={SERIES.cacheHits} />
            <Chart title="Limit rejections" rows={days} series={SERIES.rejections} />
          </div>
          <h2>Per day</h2>
          {/* Focusable: at phone width the table scrolls sideways, and a keyboard must reach it (axe). */}
          {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region is reached by keyboard */}
          <section className="scroll" tabIndex={0} aria-label="Usage per day, scrollable">
            <table>
              <caption className="sr-only">Usage per day</caption>
              <thead>
                <tr>
                  <th scope="col">Day</th>
                  <th scope="col">Requests</th>
                  <th scope="col">Prompt tokens</th>
                  <th scope="col">Completion tokens</th>
                  <th scope="col">Cost (USD)</th>
                  <th scope="col">Cached</th>
                  <th scope="col">Errors</th>
                  <th scope="col">Refused</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.key ?? ''}>
                    <th scope="row">{r.key}</th>
                    <td>{r.requests}</td>
                    <td>{r.prompt_tokens}</td>
                    <td>{r.completion_tokens}</td>
                    <td>{decimal(r.cost_usd)}</td>
                    <td>{r.cached_requests}</td>
                    <td>{r.errors}</td>
                    <td>{(r.rate_limited ?? 0) + (r.budget_exceeded ?? 0)}</td>
                  </tr>
                ))}
                {rows.length === 0 && (
                  <tr>
                    <td colSpan={8}>{loading ? 'Loading usage…' : 'No usage in this range.'}</td>
                  </tr>
                )}
              </tbody>
            </table>
          </section>
          <Breakdown isAdmin={isAdmin} from={from} to={to} refresh={loaded} filters={filters} />
          {isAdmin && <GuardrailVerdicts from={from} to={to} refresh={loaded} />}
        </>
      )}
    </section>
  );
}

/**
 * The user (admins), API key and model to narrow the page to. Keys are the caller's (every key for admins);
 * models are those with usage in the range, so each choice has something to show.
 */
function UsageFilterFields(props: {
  isAdmin: boolean;
  from: string;
  to: string;
  filters: UsageFilters;
  onChange: (f: UsageFilters) => void;
}) {
  const { isAdmin, from, to, filters, onChange } = props;
  const [users, setUsers] = useState<User[]>([]);
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [models, setModels] = useState<string[]>([]);
  useEffect(() => {
    const ignore = () => {};
    if (isAdmin) api.users().then((u) => setUsers(u.data), ignore);
    api.keys(isAdmin).then((k) => setKeys(k.data), ignore);
  }, [isAdmin]);
  useEffect(() => {
    if (from > to) return;
    api.usage({ from, to, group_by: 'model' }).then(
      (u) => setModels(u.data.flatMap((r) => (r.key ? [r.key] : []))),
      () => {},
    );
  }, [from, to]);
  const emailOf = (id: string) => users.find((u) => u.id === id)?.email;
  // A key of the chosen user only (a key of someone else would show nothing).
  const shownKeys = filters.user_id ? keys.filter((k) => k.user_id === filters.user_id) : keys;
  const set = (k: keyof UsageFilters) => (value: string) =>
    onChange({ ...filters, [k]: value, ...(k === 'user_id' ? { api_key_id: '' } : {}) });
  return (
    <>
      {isAdmin && (
        <Select
          label="Filter by user"
          value={filters.user_id}
          onChange={set('user_id')}
          blank="everyone"
          options={users.map((u) => ({ value: u.id, label: u.email }))}
        />
      )}
      <Select
        label="Filter by API key"
        value={filters.api_key_id}
        onChange={set('api_key_id')}
        blank="any key"
        options={shownKeys.map((k) => ({
          value: k.id,
          label: `${k.name} (${k.prefix}…)${isAdmin && !filters.user_id ? ` · ${emailOf(k.user_id) ?? ''}` : ''}`,
        }))}
      />
      <Select
        label="Filter by model"
        value={filters.model}
        onChange={set('model')}
        blank="any model"
        options={[...new Set([...models, ...(filters.model ? [filters.model] : [])])]}
      />
    </>
  );
}
